// Sort the leaderboard table when a header is clicked, without a page reload.
// The first click sorts by the metric's own direction (best first); a second click
// reverses it. Entries without a value always go last. Ranks are recomputed so that
// values equal at the shown precision share a rank.
(function () {
  "use strict";

  const table = document.querySelector("table[data-sortable]");
  if (!table) {
    return;
  }
  const body = table.tBodies[0];

  function cellFor(row, key) {
    return row.querySelector('td[data-key="' + CSS.escape(key) + '"]');
  }

  function numericValue(cell) {
    const value = cell ? parseFloat(cell.dataset.value) : NaN;
    return Number.isFinite(value) ? value : null;
  }

  function sortBy(header, descending) {
    const key = header.dataset.key;
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const left = numericValue(cellFor(a, key));
      const right = numericValue(cellFor(b, key));
      if (left === null || right === null) {
        return (left === null) - (right === null);
      }
      return descending ? right - left : left - right;
    });

    let previousText = null;
    let rank = 0;
    rows.forEach(function (row, index) {
      const cell = cellFor(row, key);
      const text = cell ? cell.dataset.text : "";
      if (text !== previousText) {
        rank = index + 1;
        previousText = text;
      }
      row.querySelector("td.rank").textContent = numericValue(cell) === null ? "–" : String(rank);
      body.appendChild(row);
    });

    table.querySelectorAll("th.sortable").forEach(function (other) {
      other.classList.remove("sorted-asc", "sorted-desc");
      delete other.dataset.descending;
    });
    header.classList.add(descending ? "sorted-desc" : "sorted-asc");
    header.dataset.descending = String(descending);
  }

  table.querySelectorAll("th.sortable").forEach(function (header) {
    header.addEventListener("click", function (event) {
      event.preventDefault();
      const bestFirst = header.dataset.higherIsBetter === "true";
      const current = header.dataset.descending;
      const descending = current === undefined ? bestFirst : current !== "true";
      sortBy(header, descending);
      const ordering = (descending ? "-" : "") + header.dataset.key;
      history.replaceState(null, "", "?ordering=" + encodeURIComponent(ordering));
    });
  });
})();
