// Upload the submission form with XMLHttpRequest so the page can show real upload
// progress, then follow the server's redirect to the new submission's page.
(function () {
  "use strict";

  const form = document.getElementById("submit-form");
  if (!form) {
    return;
  }
  const button = document.getElementById("submit-button");
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const label = document.getElementById("upload-progress-text");

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function showErrors(errors) {
    form.querySelectorAll("[data-errors-for]").forEach(function (list) {
      list.innerHTML = "";
    });
    Object.keys(errors).forEach(function (field) {
      const list = form.querySelector('[data-errors-for="' + field + '"]')
        || form.querySelector('[data-errors-for="__all__"]');
      errors[field].forEach(function (message) {
        const item = document.createElement("li");
        item.textContent = message;
        list.appendChild(item);
      });
    });
  }

  function finish(text) {
    label.textContent = text;
    button.disabled = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const request = new XMLHttpRequest();
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;

    request.upload.onprogress = function (progress) {
      if (!progress.lengthComputable) {
        label.textContent = "Uploading " + megabytes(progress.loaded) + "…";
        return;
      }
      const percent = Math.floor((100 * progress.loaded) / progress.total);
      bar.value = percent;
      label.textContent = "Uploading: " + percent + "% (" + megabytes(progress.loaded)
        + " of " + megabytes(progress.total) + ")";
    };
    request.upload.onload = function () {
      bar.value = 100;
      label.textContent = "Upload complete; storing the archive…";
    };
    request.onload = function () {
      let reply = null;
      try {
        reply = JSON.parse(request.responseText);
      } catch (error) {
        finish("The server returned an unexpected reply (HTTP " + request.status + "). Try again.");
        return;
      }
      if (request.status < 300 && reply.redirect) {
        label.textContent = "Submitted. Opening the submission page…";
        window.location.assign(reply.redirect);
        return;
      }
      showErrors(reply.errors || { __all__: ["The upload failed (HTTP " + request.status + ")."] });
      finish("The upload was not accepted; see the messages above.");
    };
    request.onerror = function () {
      finish("The connection failed during the upload. Check your network and try again.");
    };

    request.open("POST", form.action);
    request.setRequestHeader("X-CSRFToken", token);
    request.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    request.setRequestHeader("Accept", "application/json");
    status.hidden = false;
    bar.value = 0;
    button.disabled = true;
    request.send(new FormData(form));
  });
})();
