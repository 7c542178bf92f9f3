// Draw each plotly figure whose JSON the server embedded with json_script.
(function () {
  "use strict";

  document.querySelectorAll("[data-figure]").forEach(function (container) {
    const source = document.getElementById(container.dataset.figure);
    if (!source || typeof Plotly === "undefined") {
      return;
    }
    const figure = JSON.parse(source.textContent);
    Plotly.newPlot(container, figure.data, figure.layout, {
      responsive: true,
      displaylogo: false,
    });
  });
})();
