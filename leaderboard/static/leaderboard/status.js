// Poll the status JSON endpoint every 2 seconds and update states and progress bars
// in place while any evaluation on the page is still running.
(function () {
  "use strict";

  const POLL_MS = 2000;
  const ENDED = ["finished", "failed", "cancelled"];

  function setField(root, name, apply) {
    const element = root.querySelector('[data-field="' + name + '"]');
    if (element) {
      apply(element);
    }
  }

  // Apply one status object {id, state, state_label, percent, message, hpa, cancellable}.
  function render(root, status) {
    root.dataset.state = status.state;
    setField(root, "state", function (element) {
      element.textContent = status.state_label;
      element.className = "state state-" + status.state;
    });
    setField(root, "message", function (element) { element.textContent = status.message || ""; });
    setField(root, "progress", function (element) { element.value = status.percent; });
    setField(root, "progress-text", function (element) { element.textContent = status.percent + "%"; });
    setField(root, "hpa", function (element) { element.textContent = status.hpa || "–"; });
    if (!status.cancellable) {
      setField(root, "cancel", function (element) { element.remove(); });
    }
  }

  function running(root) {
    return ENDED.indexOf(root.dataset.state) === -1;
  }

  function pollList(table) {
    const rows = Array.from(table.querySelectorAll("tr[data-submission]")).filter(running);
    if (rows.length === 0) {
      return;
    }
    const ids = rows.map(function (row) { return row.dataset.submission; }).join(",");
    fetch(table.dataset.statusUrl + "?ids=" + ids, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { submissions: [] }; })
      .then(function (reply) {
        reply.submissions.forEach(function (status) {
          const row = table.querySelector('tr[data-submission="' + status.id + '"]');
          if (row) {
            render(row, status);
          }
        });
      })
      .catch(function () { /* A failed poll is retried on the next tick. */ })
      .finally(function () { window.setTimeout(pollList, POLL_MS, table); });
  }

  function pollOne(section) {
    if (!running(section)) {
      return;
    }
    fetch(section.dataset.statusUrl, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (status) {
        if (!status) {
          return;
        }
        render(section, status);
        if (!running(section)) {
          setField(section, "reload", function (element) { element.hidden = false; });
          // The results tables are rendered by the server, so load them once.
          window.setTimeout(function () { window.location.reload(); }, 500);
        }
      })
      .catch(function () { /* A failed poll is retried on the next tick. */ })
      .finally(function () { window.setTimeout(pollOne, POLL_MS, section); });
  }

  const table = document.querySelector("table[data-status-url]");
  if (table) {
    window.setTimeout(pollList, POLL_MS, table);
  }
  const section = document.querySelector("section[data-status-url]");
  if (section) {
    window.setTimeout(pollOne, POLL_MS, section);
  }
})();
