// Warden's web page: the live feed. Pages are rendered by the server; this
// script only follows the record stream, pauses and resumes it, and keeps
// the feed's window bounded. It never puts data into HTML: rows are built
// with createElement and textContent (the server's Content-Security-Policy
// allows this file and nothing inline).
'use strict';

(function () {
  // Characters shown as a marked \u{..} instead of themselves: the same set
  // as the server's `web::text::is_hidden` (controls, ANSI's ESC, bidi
  // overrides and isolates, zero-width and invisible characters).
  var HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

  function el(tag, className) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    return e;
  }

  // Appends `text` to `parent` as text nodes, hidden characters as
  // <span class="esc">\u{hex}</span>.
  function shownInto(parent, text) {
    text = text == null ? '' : String(text);
    var run = '';
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (HIDDEN.test(ch)) {
        if (run) { parent.appendChild(document.createTextNode(run)); run = ''; }
        var esc = el('span', 'esc');
        esc.textContent = '\\u{' + ch.charCodeAt(0).toString(16) + '}';
        parent.appendChild(esc);
      } else {
        run += ch;
      }
    }
    if (run) parent.appendChild(document.createTextNode(run));
    return parent;
  }

  function shownEl(tag, className, text) {
    return shownInto(el(tag, className), text);
  }

  // A record object of the stream as a feed row; the same markup as the
  // server's `web::feed::record_row`.
  function recordRow(r) {
    var deny = r.decision === 'deny';
    var li = el('li', 'rec ' + (deny ? 'deny' : 'allow'));
    li.dataset.id = String(r.id);
    li.classList.add('new');
    var line1 = li.appendChild(el('div', 'line1'));
    line1.appendChild(el('time')).textContent = r.ts;
    line1.appendChild(el('span', 'dec')).textContent = deny ? 'deny' : 'allow';
    line1.appendChild(shownEl('span', 'method', r.http_method));
    var ws = '/workspaces/' + encodeURIComponent(r.workspace_id);
    var wsLink = line1.appendChild(el('a', 'ws'));
    wsLink.href = ws;
    if (r.workspace_name) shownInto(wsLink, r.workspace_name); else wsLink.textContent = r.workspace_id;
    if (r.session_id != null) {
      var sess = line1.appendChild(el('a', 'sess'));
      sess.href = ws + '/sessions/' + encodeURIComponent(r.session_id);
      shownInto(sess, r.session_id);
      sess.appendChild(document.createTextNode(' #' + r.sequence));
    }
    if (r.conflict) line1.appendChild(el('span', 'flag')).textContent = 'conflict';
    li.appendChild(shownEl('div', 'url', r.http_url));
    var more = li.appendChild(el('div', 'more'));
    function labelled(label, value) {
      var s = more.appendChild(el('span'));
      s.appendChild(document.createTextNode(label + ' '));
      s.appendChild(shownEl('span', 'v', value));
      return s;
    }
    if (r.matched_rule) labelled('rule', r.matched_rule);
    if (r.process) labelled('process', r.process);
    var peer = labelled('peer', r.peer.comm);
    peer.appendChild(document.createTextNode(' pid ' + r.peer.pid + ' uid ' + r.peer.uid + ' '));
    peer.appendChild(shownEl('span', 'v', r.peer.exe));
    return li;
  }

  function follow(feed) {
    var url = feed.dataset.stream;
    var windowSize = parseInt(feed.dataset.window, 10) || 500;
    var status = document.getElementById('live-status');
    var pause = document.getElementById('pause');
    var empty = document.getElementById('feed-empty');
    var paused = false;
    var held = [];      // records that arrived while paused, newest last
    var missed = 0;     // of those, how many the window could not keep
    var source = null;

    function say(text) { if (status) status.textContent = text; }

    function trim() {
      while (feed.children.length > windowSize) feed.removeChild(feed.lastElementChild);
    }

    function show(records) {
      if (!records.length) return;
      if (empty) { empty.remove(); empty = null; }
      var batch = document.createDocumentFragment();
      for (var i = records.length - 1; i >= 0; i--) batch.appendChild(recordRow(records[i]));
      feed.insertBefore(batch, feed.firstChild);
      trim();
    }

    // Rows are added once per animation frame, so a burst of events costs
    // one layout, not one per record.
    var pending = [];
    var scheduled = false;
    function flush() {
      scheduled = false;
      var records = pending;
      pending = [];
      show(records.slice(-windowSize));
    }

    function onRecord(event) {
      var record;
      try { record = JSON.parse(event.data); } catch (e) { return; }
      if (paused) {
        held.push(record);
        if (held.length > windowSize) { held.shift(); missed++; }
        say('paused: ' + (held.length + missed) + ' new');
        return;
      }
      pending.push(record);
      if (pending.length > windowSize) pending.shift();
      if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
    }

    function connect() {
      source = new EventSource(url, { withCredentials: true });
      source.addEventListener('open', function () { if (!paused) say('live'); });
      source.addEventListener('record', onRecord);
      source.addEventListener('error', function () {
        if (source.readyState === EventSource.CLOSED) {
          say('disconnected (signed out or the server stopped): reload the page');
        } else {
          say('reconnecting…');
        }
      });
    }

    if (pause) {
      pause.addEventListener('click', function () {
        paused = !paused;
        pause.setAttribute('aria-pressed', paused ? 'true' : 'false');
        pause.textContent = paused ? 'Resume' : 'Pause';
        if (paused) {
          say('paused');
        } else {
          if (missed) say('live (' + missed + ' records arrived while paused and are not shown: reload to see them)');
          else say('live');
          show(held);
          held = [];
          missed = 0;
        }
      });
    }
    connect();
    window.addEventListener('pagehide', function () { if (source) source.close(); });
  }

  function start() {
    var feed = document.getElementById('feed');
    if (feed && feed.dataset.stream) follow(feed);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
