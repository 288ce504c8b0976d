"""The browser interfaces: the privacy center for data subjects (``/privacy/``) and the
console for privacy staff and auditors (``/console/``), served by ``ledger serve``.

Rules this package keeps:

* **No second path to the data.** Pages read and record through the query API's own route
  functions and scopes (``calls``); they hold no SQL over the views and build no command.
* **Sessions, not tokens, in the browser.** The browser holds a random session id in a
  ``__Host-`` cookie; the API key or subject reference behind it stays on the server
  (``sessions``), personal values wrapped by the KEK.
* **Strict pages.** Every HTML response carries a Content-Security-Policy allowing only the
  ledger's own origin, no inline script or style, no framing (``security``); every form post
  carries a CSRF token; sign-in is rate limited; sessions expire.
* **No personal data in URLs, logs or browser storage.** References travel in the bodies of
  the tenant's API calls only; page URLs carry purpose codes, event ids and subject ids.
* **No third-party assets.** Styles, charts (server-drawn SVG) and texts are served from the
  package itself; the pages work without script.
"""
