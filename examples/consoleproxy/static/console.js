// The console page: reads the token from the URL fragment (never sent in
// an HTTP request line or a Referer), opens the proxy's WebSocket, reads
// the proxy's first text message (the back end's security state, or why
// there is no session) and only then hands the socket to noVNC, which
// speaks RFB with security None to the proxy.
"use strict";
(function () {
	// consoleState is for tests and support: the phase, the error shown,
	// the proxy's status, and when (performance.now(), ms since the
	// navigation began) each step happened.
	var console_ = window.consoleState = { phase: "connecting", error: "", status: null, times: { script: performance.now() } };
	var token = decodeURIComponent(location.hash.replace(/^#/, ""));
	history.replaceState(null, "", location.pathname);

	function $(id) { return document.getElementById(id); }
	function setState(phase, text) {
		console_.phase = phase;
		$("state").textContent = text;
		document.body.dataset.phase = phase;
	}
	function showError(msg) {
		if (console_.phase === "error") { return; }
		console_.error = msg;
		$("error").textContent = msg;
		$("error").hidden = false;
		setState("error", "Disconnected");
	}

	if (!token) {
		showError("no console token in the link");
		return;
	}
	var scheme = location.protocol === "https:" ? "wss:" : "ws:";
	var ws = new WebSocket(scheme + "//" + location.host + "/websockify?token=" + encodeURIComponent(token));
	ws.binaryType = "arraybuffer";
	ws.onopen = function () { console_.times.open = performance.now(); };
	ws.onclose = function (e) {
		showError(e.reason || "the console proxy closed the connection");
	};
	ws.onerror = function () {};
	ws.onmessage = function (e) {
		if (typeof e.data !== "string") {
			ws.close();
			showError("the console proxy sent no status");
			return;
		}
		var st;
		try { st = JSON.parse(e.data); } catch (err) { st = { error: "unreadable status from the console proxy" }; }
		console_.status = st;
		console_.times.status = performance.now();
		if (st.error) {
			ws.onclose = null;
			ws.close();
			showError(st.error);
			return;
		}
		if (st.encrypted) {
			var ind = $("encrypted");
			ind.textContent = "Encrypted (" + st.tlsVersion + ", " + st.security + ", server " + st.server + ")";
			ind.title = st.cipherSuite + "; verified by " + st.issuer;
			ind.hidden = false;
		} else {
			$("unencrypted").hidden = false;
		}
		ws.onclose = null;
		ws.onmessage = null;
		// noVNC attaches to the open socket synchronously, before the
		// next message is dispatched.
		var rfb;
		try {
			rfb = new window.NoVNC.RFB($("screen"), ws, { shared: true });
		} catch (err) {
			ws.close();
			showError("the console viewer failed to start: " + err);
			return;
		}
		rfb.addEventListener("connect", function () {
			console_.times.connected = performance.now();
			setState("connected", "Connected");
		});
		rfb.addEventListener("disconnect", function (ev) {
			showError(ev.detail.clean ? "the console session ended" : "the console connection was lost");
		});
		rfb.addEventListener("securityfailure", function (ev) {
			showError("console security failure: " + (ev.detail.reason || ev.detail.status));
		});
		rfb.addEventListener("desktopname", function (ev) {
			// The desktop name is the VM's to choose: shown as the
			// title, never taken as a sign of security.
			document.title = ev.detail.name + " – console";
		});
	};
})();
