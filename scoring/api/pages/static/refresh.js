// Reload the page every few seconds while something it shows is still in progress.
(function () {
  "use strict";
  var seconds = Number(document.currentScript.dataset.seconds || "3");
  setTimeout(function () { window.location.reload(); }, seconds * 1000);
})();
