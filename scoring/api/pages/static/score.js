// Score a file: send it to /score-file with upload progress, then offer the result for download.
(function () {
  "use strict";
  var form = document.getElementById("score-form");
  var input = document.getElementById("score-file");
  var zone = document.getElementById("drop-zone");
  var bar = document.getElementById("score-progress");
  var status = document.getElementById("score-status");
  var link = document.getElementById("score-download");

  function say(text) { status.textContent = text; }

  function send(file) {
    var format = document.getElementById("score-format").value;
    var url = form.dataset.endpoint + (format ? "?format=" + encodeURIComponent(format) : "");
    var body = new FormData();
    body.append("file", file, file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "blob";
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    link.hidden = true;
    bar.hidden = false;
    bar.value = 0;
    say("uploading " + file.name + "…");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((e.loaded / e.total) * 100);
        if (e.loaded === e.total) { say("scoring " + file.name + "…"); }
      }
    };
    xhr.onload = function () {
      bar.value = 100;
      if (xhr.status !== 200) {
        xhr.response.text().then(function (text) {
          var message = "the server answered " + xhr.status;
          try { message = JSON.parse(text).error.message; } catch (ignored) { /* not JSON */ }
          say("Not scored: " + message);
        });
        return;
      }
      var disposition = xhr.getResponseHeader("Content-Disposition") || "";
      var match = /filename="?([^";]+)"?/.exec(disposition);
      var stem = file.name.replace(/\.[^.]*(\.gz)?$/, "");
      var suffix = match ? match[1].replace(/^scored/, "") : "";
      if (link.href) { URL.revokeObjectURL(link.href); }
      link.href = URL.createObjectURL(xhr.response);
      link.download = stem + ".scored" + suffix;
      link.hidden = false;
      link.dataset.rows = xhr.getResponseHeader("X-Rows-Scored") || "";
      say("Scored " + xhr.getResponseHeader("X-Rows-Scored") + " rows (" +
          xhr.getResponseHeader("X-Rows-Failed") + " failed) with model version " +
          xhr.getResponseHeader("X-Model-Version") + ": " + link.download + ".");
    };
    xhr.onerror = function () { say("The upload failed: the server could not be reached."); };
    xhr.send(body);
  }

  input.addEventListener("change", function () { if (input.files.length) { send(input.files[0]); } });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    if (e.dataTransfer.files.length) { send(e.dataTransfer.files[0]); }
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); });
})();
