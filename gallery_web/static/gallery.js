// Live updates without a reload: the index swaps in a fresh listing when the run index changes,
// and a run page re-renders its body while the run is queued or running. Vanilla JS, no CDN.
(function () {
  "use strict";

  function fragmentUrl(url) {
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "fragment=1";
  }

  function poll(fn, ms) {
    var busy = false;
    return setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fn().catch(function () {}).then(function () { busy = false; });
    }, ms);
  }

  function liveIndex(listing) {
    var url = listing.dataset.liveUrl.replace(/\?$/, "");
    var ms = +listing.dataset.pollMs || 2000;
    poll(function () {
      return fetch(listing.dataset.versionUrl, {cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (state) {
          if (state.version === listing.dataset.version) return;
          return fetch(fragmentUrl(url), {cache: "no-store"}).then(function (r) {
            if (!r.ok) return;
            return r.text().then(function (html) {
              listing.innerHTML = html;
              var fresh = listing.querySelector("[data-version]");
              listing.dataset.version = fresh ? fresh.dataset.version : state.version;
            });
          });
        });
    }, ms);
  }

  function liveRun(article) {
    var ms = +article.dataset.pollMs || 2000;
    var active = function () {
      var body = article.querySelector(".run-body");
      return body && (body.dataset.status === "running" || body.dataset.status === "queued");
    };
    if (!active()) return;
    var timer = poll(function () {
      return fetch(article.dataset.api, {cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (run) {
          if (String(run.version) === article.dataset.version && run.status === article.querySelector(".run-body").dataset.status) return;
          return fetch(article.dataset.fragment, {cache: "no-store"}).then(function (r) { return r.text(); })
            .then(function (html) {
              article.innerHTML = html;
              article.dataset.version = String(run.version);
              if (!active()) clearInterval(timer);
            });
        });
    }, ms);
  }

  // Copy buttons: navigator.clipboard where the page may use it, else a selected textarea + execCommand.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }

  function legacyCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    copyText(button.dataset.copy || "").then(function () {
      button.textContent = "Copied"; button.classList.add("copied");
    }, function () {
      button.textContent = "Copy failed";
    }).then(function () {
      setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1500);
    });
  });

  // Star and hide: the forms post in the background and the button flips; without script they
  // post and come back to the same page.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("mark")) return;
    event.preventDefault();
    var data = new FormData(form);
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"Accept": "application/json", "X-Gallery-Token": data.get("token")}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r); })
      .then(function (marks) {
        var field = form.querySelector("input[name=starred], input[name=hidden]");
        var on = !!marks[field.name];
        field.value = on ? "0" : "1";
        var button = form.querySelector("button");
        button.setAttribute("aria-pressed", on ? "true" : "false");
        if (field.name === "starred") { button.textContent = on ? "★" : "☆"; button.title = on ? "Unstar" : "Star"; }
        else { button.textContent = on ? "show" : "hide"; button.title = on ? "Show again" : "Hide from the list"; }
        var card = form.closest(".card");
        if (card) card.classList.toggle(field.name === "starred" ? "is-starred" : "is-hidden", on);
      })
      .catch(function () { form.submit(); });  // let the server say why, as a page
  });

  // The secondary filters submit the one search form as soon as they change.
  document.querySelectorAll("[form=search]").forEach(function (el) {
    if (el.tagName === "BUTTON") return;
    el.addEventListener("change", function () {
      var form = document.getElementById("search");
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    });
  });

  var listing = document.getElementById("listing");
  if (listing) liveIndex(listing);
  var article = document.getElementById("run");
  if (article) liveRun(article);
})();
