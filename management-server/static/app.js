// FerrisFX web UI: the little the pages need beyond plain HTML and htmx. Every page works
// without it; with it, lists and executions update live (server-sent events), uploads show
// their progress and accept a dropped file, and the handler form grows condition rows.
(function () {
  "use strict";
  var streams = [];

  function closeStreams() {
    streams.forEach(function (s) { s.close(); });
    streams = [];
  }

  // <div data-live="/live/executions?..."> is replaced by each `rows` event;
  // <div data-live-reload="/live/executions/ID?..."> reloads <main> on `changed`.
  function follow(root) {
    closeStreams();
    root.querySelectorAll("[data-live]").forEach(function (el) {
      var source = new EventSource(el.getAttribute("data-live"));
      source.addEventListener("rows", function (e) { el.innerHTML = e.data; });
      streams.push(source);
    });
    root.querySelectorAll("[data-live-reload]").forEach(function (el) {
      var source = new EventSource(el.getAttribute("data-live-reload"));
      source.addEventListener("changed", function () {
        source.close();
        fetch(window.location.href, { headers: { "Accept": "text/html" } })
          .then(function (r) { return r.text(); })
          .then(function (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            var main = doc.querySelector("main");
            if (main) {
              document.querySelector("main").innerHTML = main.innerHTML;
              follow(document);
            }
          });
      });
      streams.push(source);
    });
  }

  function dropzones(root) {
    root.querySelectorAll("[data-dropzone]").forEach(function (zone) {
      var input = zone.querySelector("input[type=file]");
      ["dragenter", "dragover"].forEach(function (name) {
        zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (name) {
        zone.addEventListener(name, function () { zone.classList.remove("over"); });
      });
      zone.addEventListener("drop", function (e) {
        e.preventDefault();
        if (input && e.dataTransfer && e.dataTransfer.files.length) {
          input.files = e.dataTransfer.files;
        }
      });
    });
  }

  function conditionRows(root) {
    root.querySelectorAll("[data-add-condition]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var body = document.querySelector("#conditions tbody");
        var rows = body.querySelectorAll("tr");
        var last = rows[rows.length - 1];
        var copy = last.cloneNode(true);
        var index = rows.length;
        copy.querySelectorAll("[name]").forEach(function (field) {
          field.name = field.name.replace(/^cond\.\d+\./, "cond." + index + ".");
          if (field.type === "checkbox") { field.checked = false; } else if (field.tagName === "INPUT") { field.value = ""; }
        });
        body.appendChild(copy);
        copy.querySelector("input[name$='.attribute']").focus();
      });
    });
    // A condition's value is suggested from the event catalogue: sources for `source`, types
    // otherwise.
    root.addEventListener("input", function (e) {
      var field = e.target;
      if (!field.name || !/^cond\.\d+\.attribute$/.test(field.name)) { return; }
      var value = field.closest("tr").querySelector("input[name$='.value']");
      if (value) { value.setAttribute("list", field.value.trim() === "source" ? "event-sources" : "event-types"); }
    });
  }

  // Signed in (a session cookie): every change carries the session's CSRF token, in a hidden
  // field of a plain form and in a header of an htmx request; the sign-out button shows.
  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)fx_csrf=([0-9a-f]+)/);
    return m ? m[1] : null;
  }

  function sessionControls() {
    var signout = document.getElementById("signout");
    if (signout && csrf()) { signout.hidden = false; }
  }

  function setup(root) {
    dropzones(root);
    conditionRows(root);
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { e.preventDefault(); return; }
    var token = csrf();
    if (token && (form.method || "").toLowerCase() === "post" && !form.querySelector("input[name=_csrf]")) {
      var field = document.createElement("input");
      field.type = "hidden";
      field.name = "_csrf";
      field.value = token;
      form.appendChild(field);
    }
  });
  document.addEventListener("htmx:configRequest", function (e) {
    var token = csrf();
    if (token) { e.detail.headers["X-CSRF-Token"] = token; }
  });
  document.addEventListener("htmx:xhr:progress", function (e) {
    var bar = document.getElementById("upload-progress");
    if (bar && e.detail.lengthComputable) {
      bar.hidden = false;
      bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
    }
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.target && e.target.tagName === "MAIN") { follow(document); setup(document); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    follow(document);
    setup(document);
    sessionControls();
  });
  window.addEventListener("pagehide", closeStreams);
})();
