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

  var listing = document.getElementById("listing");
  if (listing) liveIndex(listing);
  var article = document.getElementById("run");
  if (article) liveRun(article);
})();
