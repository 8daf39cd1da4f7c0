"""A quarantined symbolic link can be neither downloaded nor retried: nothing is read through it."""

from __future__ import annotations

from scoring.api.app import create_app
from scoring.service.runtime import open_intake
from tests.conftest import assert_error, make_settings


def test_a_refused_link_is_never_read_through_the_api(tmp_path) -> None:
    settings = make_settings(tmp_path)
    _, ledger, intake = open_intake(settings)
    target = settings.data_dir / "inside.csv"  # inside the data folder, so only the link check
    target.write_text("id,x\n1,1.5\n")  # stands between a client and this file
    link = settings.data_dir / "inbox" / "score" / "inside.csv"
    link.symlink_to(target)
    record = intake.take(link, "score")
    assert (record.state, record.error["code"]) == ("quarantined", "symlink")
    client = create_app(settings, ledger=ledger).test_client()
    assert_error(client.get(f"/files/{record.id}/original"), 404, "not_found", str(record.id))
    assert_error(client.post(f"/files/{record.id}/retry"), 404, "not_found", str(record.id))
    assert sorted(p.name for p in link.parent.iterdir()) == []
    assert target.read_text() == "id,x\n1,1.5\n"
