// Show every <time data-localtime datetime="..."> in the browser's time zone.
// The server renders UTC so the page still reads correctly without JavaScript.
(function () {
  "use strict";

  function formatLocal(element) {
    const instant = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(instant.getTime())) {
      return;
    }
    // dateStyle cannot be combined with timeZoneName, so the full form lists its parts.
    const options = element.dataset.format === "date"
      ? { dateStyle: "medium" }
      : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
          timeZoneName: "short" };
    element.textContent = instant.toLocaleString(undefined, options);
    element.title = instant.toISOString();
  }

  window.reflade = window.reflade || {};
  window.reflade.formatLocalTimes = function (root) {
    (root || document).querySelectorAll("time[data-localtime]").forEach(formatLocal);
  };
  window.reflade.formatLocalTimes(document);
})();
