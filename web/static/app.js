// Cited search page: streams the answer over Server-Sent Events (POST /api/answer,
// stream: true), links each [n] to its source card and to the cited passage on the
// source page, and keeps a follow-up conversation.
//
// Safety rule for this file: text from crawled pages and from the model is only ever
// put into the page with textContent / createTextNode, never as HTML.
"use strict";

(function () {
  const CITE = /\[(\d+(?:\s*[,;]\s*\d+)*)\]/g;
  const CJK = /[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+/gu;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Same list as web/present.py: question words would light up every snippet.
  const STOP = new Set(("what how which who whom why when where with without the and for does did can could " +
    "should would that this these those are was were from into about have has had not " +
    "you your there their its any all some use used using").split(" "));

  // Query terms to highlight: topic words, and bigrams of CJK runs (as the index sees them).
  function queryTerms(query) {
    const terms = new Set();
    const lower = query.normalize("NFKC").toLowerCase();
    const addWord = (w) => { if (w.length >= 3 && !STOP.has(w)) terms.add(w); };
    for (const word of lower.match(/[\p{L}\p{N}_]+/gu) || []) {
      const runs = word.match(CJK);
      if (!runs) {
        addWord(word);
        continue;
      }
      for (const run of runs) {
        if (run.length < 2) terms.add(run);
        for (let i = 0; i + 1 < run.length; i++) terms.add(run.slice(i, i + 2));
      }
      for (const rest of word.split(CJK)) addWord(rest);
    }
    return [...terms].sort((a, b) => b.length - a.length);
  }

  // CJK terms match anywhere; others at a word start, short ones as whole words.
  function termPattern(term) {
    const escaped = escapeRegExp(term);
    if (CJK.test(term)) { CJK.lastIndex = 0; return escaped; }
    return "(?<![\\p{L}\\p{N}_])" + escaped + (term.length <= 3 ? "(?![\\p{L}\\p{N}_])" : "");
  }

  function escapeRegExp(s) {
    return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // Append text to node with query terms wrapped in <mark> (all as text nodes).
  function appendHighlighted(node, text, terms) {
    if (!terms.length) {
      node.appendChild(document.createTextNode(text));
      return;
    }
    const re = new RegExp(terms.map(termPattern).join("|"), "giu");
    let pos = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > pos) node.appendChild(document.createTextNode(text.slice(pos, m.index)));
      node.appendChild(el("mark", {}, m[0]));
      pos = m.index + m[0].length;
    }
    if (pos < text.length) node.appendChild(document.createTextNode(text.slice(pos)));
  }

  function siteOf(url) {
    try {
      return new URL(url, location.href).hostname;
    } catch (e) {
      return "";
    }
  }

  // Only http(s) links from the engine become hrefs; anything else (javascript:...) is dropped.
  function safeHref(url) {
    try {
      const u = new URL(url, location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // url#anchor plus a text fragment (#:~:text=) that scrolls to and highlights the quote.
  function fragmentLink(url, quote) {
    const href = safeHref(url);
    if (!href) return null;
    const words = (quote || "").split(/\s+/).filter(Boolean);
    if (!words.length) return href;
    const enc = (s) => encodeURIComponent(s).replace(/-/g, "%2D").replace(/,/g, "%2C");
    const directive = words.length > 12
      ? enc(words.slice(0, 6).join(" ")) + "," + enc(words.slice(-4).join(" "))
      : enc(words.join(" "));
    return href + (href.includes("#") ? "" : "#") + ":~:text=" + directive;
  }

  class Turn {
    constructor(section, query, terms) {
      this.section = section;
      this.id = section.id;
      this.query = query;
      this.terms = terms;
      this.text = "";
      this.sources = new Map();
      this.quotes = new Map();
      this.links = new Map();
      this.unsupported = new Set();
      this.status = section.querySelector(".status");
      this.answer = section.querySelector(".answer-text");
      this.related = section.querySelector(".related");
      this.pending = false;
    }

    setStatus(text, kind) {
      this.status.textContent = text;
      this.status.className = "status" + (kind ? " " + kind : "");
      this.status.setAttribute("role", kind === "error" ? "alert" : "status");
      this.section.setAttribute("aria-busy", kind === "loading" ? "true" : "false");
    }

    showSources(sources) {
      let container = this.section.querySelector(".sources");
      if (!container) {
        container = el("section", { class: "sources", "aria-labelledby": this.id + "-sources-h" });
        container.appendChild(el("h2", { id: this.id + "-sources-h" }, "Sources"));
        this.section.appendChild(container);
      }
      for (const old of container.querySelectorAll(".source-list, .empty")) old.remove();
      this.sources.clear();
      if (!sources.length) {
        container.appendChild(el("p", { class: "empty" }, "No sources found for this question. Try other words, or ask in another language."));
        return;
      }
      const list = el("ol", { class: "source-list" });
      for (const src of sources) {
        this.sources.set(Number(src.n), src);
        const item = el("li", { class: "source", id: this.id + "-src-" + src.n });
        item.appendChild(el("span", { class: "num", "aria-hidden": "true" }, src.n));
        const body = el("div", { class: "source-body" });
        const title = el("h3", { class: "source-title" });
        const href = safeHref(src.url);
        const link = el("a", href ? { href: href, rel: "noopener noreferrer", target: "_blank" } : {}, src.title || src.url);
        title.appendChild(link);
        body.appendChild(title);
        const meta = el("p", { class: "meta" });
        meta.appendChild(el("span", { class: "site" }, siteOf(src.url)));
        if (src.lang) {
          meta.appendChild(document.createTextNode(" · "));
          meta.appendChild(el("span", { class: "lang", title: "language" }, src.lang));
        }
        body.appendChild(meta);
        if (src.snippet || src.text) {
          const snip = el("p", { class: "snippet", lang: src.lang || null });
          appendHighlighted(snip, src.snippet || src.text, this.terms);
          body.appendChild(snip);
        }
        item.appendChild(body);
        list.appendChild(item);
      }
      container.appendChild(list);
    }

    addToken(delta) {
      this.text += delta;
      if (!this.pending) {
        this.pending = true;
        requestAnimationFrame(() => {
          this.pending = false;
          this.renderAnswer();
        });
      }
    }

    // The answer as text nodes, with each [n] turned into two links: to the source card
    // on this page, and to the cited passage on the source page.
    renderAnswer() {
      const frag = document.createDocumentFragment();
      let pos = 0;
      for (const m of this.text.matchAll(CITE)) {
        if (m.index > pos) frag.appendChild(document.createTextNode(this.text.slice(pos, m.index)));
        const numbers = m[1].split(/\s*[,;]\s*/).map(Number);
        if (!numbers.every((n) => this.sources.has(n))) {
          frag.appendChild(document.createTextNode(m[0]));
        } else {
          for (const n of numbers) frag.appendChild(this.marker(n));
        }
        pos = m.index + m[0].length;
      }
      if (pos < this.text.length) frag.appendChild(document.createTextNode(this.text.slice(pos)));
      this.answer.replaceChildren(frag);
    }

    marker(n) {
      const src = this.sources.get(n);
      const sup = el("sup", { class: "cite" + (this.unsupported.has(n) ? " unsupported" : "") });
      sup.appendChild(document.createTextNode("["));
      const title = src.title || src.url;
      sup.appendChild(el("a", { class: "cite-card", href: "#" + this.id + "-src-" + n, "aria-label": "Source " + n + ": " + title }, n));
      const out = this.links.get(n) || fragmentLink(src.url, this.quotes.get(n));
      if (out) {
        sup.appendChild(el("a", {
          class: "cite-out", href: out, target: "_blank", rel: "noopener noreferrer",
          "aria-label": "Open source " + n + " at the cited passage", title: "Open the cited passage",
        }, "↗"));
      }
      sup.appendChild(document.createTextNode("]"));
      if (this.unsupported.has(n)) sup.title = "This citation was not confirmed by the source";
      return sup;
    }

    // The verified answer replaces the streamed one (citations to sources that do not
    // exist are dropped there); each [n] then links to its quoted span.
    showCitations(data) {
      if (typeof data.text === "string" && data.text.trim()) this.text = data.text;
      for (const c of data.citations || []) {
        const n = Number(c.n);
        const fragment = c.fragment_url ? safeHref(c.fragment_url) : null;
        if (fragment && !this.links.has(n)) this.links.set(n, fragment);
        if (c.quote && !this.quotes.has(n)) this.quotes.set(n, c.quote);
        if (c.supported === false) this.unsupported.add(n);
      }
      this.renderAnswer();
    }

    showRelated(questions, onAsk) {
      const list = this.related.querySelector("ul");
      list.replaceChildren();
      for (const q of questions || []) {
        if (typeof q !== "string" || !q.trim()) continue;
        const item = el("li");
        const link = el("a", { href: "/search?q=" + encodeURIComponent(q), class: "related-q" }, q);
        link.addEventListener("click", (ev) => {
          ev.preventDefault();
          onAsk(q);
        });
        item.appendChild(link);
        list.appendChild(item);
      }
      this.related.hidden = !list.children.length;
    }
  }

  // Parse a text/event-stream body into (event, data) pairs as chunks arrive.
  async function* readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield [event, JSON.parse(data.join("\n"))];
      }
    }
  }

  class Conversation {
    constructor(main) {
      this.main = main;
      this.history = [];
      this.container = main.querySelector("#conversation");
      this.form = main.querySelector("#followup");
      this.input = main.querySelector("#followup-q");
      this.busy = false;
      this.form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const q = this.input.value.trim();
        if (q && !this.busy) {
          this.input.value = "";
          this.ask(q, this.newTurn(q));
        }
      });
    }

    newTurn(q) {
      const id = "t" + (this.container.querySelectorAll(".turn").length + 1);
      const section = el("section", { class: "turn", id: id, "aria-labelledby": id + "-q" });
      section.appendChild(el("h1", { class: "question", id: id + "-q" }, q));
      const answer = el("section", { class: "answer", "aria-labelledby": id + "-answer-h" });
      answer.appendChild(el("h2", { id: id + "-answer-h", class: "visually-hidden" }, "Answer"));
      answer.appendChild(el("p", { class: "status", role: "status", "aria-live": "polite" }));
      answer.appendChild(el("div", { class: "answer-text", "aria-live": "polite" }));
      const related = el("nav", { class: "related", "aria-label": "Related questions" });
      related.hidden = true;
      related.appendChild(el("h3", {}, "Related"));
      related.appendChild(el("ul"));
      answer.appendChild(related);
      section.appendChild(answer);
      this.container.appendChild(section);
      section.scrollIntoView({ block: "start" });
      return section;
    }

    async ask(q, section) {
      const turn = new Turn(section, q, queryTerms(q));
      this.busy = true;
      this.form.setAttribute("aria-disabled", "true");
      turn.setStatus("Searching and writing the answer…", "loading");
      let finished = false;
      try {
        const response = await fetch("/api/answer", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({ q: q, history: this.history, stream: true }),
        });
        if (!response.ok) {
          let message = "The answer failed (HTTP " + response.status + ").";
          try {
            const body = await response.json();
            if (body && body.error && body.error.message) message = body.error.message;
          } catch (e) { /* not JSON */ }
          turn.setStatus(message, "error");
          return;
        }
        for await (const [event, data] of readEvents(response)) {
          if (event === "sources") {
            turn.showSources(data.sources || []);
            turn.setStatus("Writing the answer…", "loading");
          } else if (event === "token") {
            turn.addToken(String(data.text || ""));
          } else if (event === "citations") {
            turn.showCitations(data);
          } else if (event === "related") {
            turn.showRelated(data.questions, (rq) => this.ask(rq, this.newTurn(rq)));
          } else if (event === "done") {
            finished = true;
            turn.renderAnswer();
            if (!turn.text.trim()) turn.setStatus("The sources do not answer this question.", "empty");
            else turn.setStatus("", "");
            section.dataset.done = "true";
            this.history.push({ q: q, answer: turn.text });
          } else if (event === "error") {
            finished = true;
            turn.setStatus(data.message || "The answer failed.", "error");
          }
        }
        if (!finished) turn.setStatus("The connection closed before the answer was complete.", "error");
      } catch (err) {
        turn.setStatus("Could not reach the server: " + err.message, "error");
      } finally {
        this.busy = false;
        this.form.removeAttribute("aria-disabled");
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const main = document.querySelector("main.results");
    if (!main) return;
    const first = main.querySelector("#t1");
    const conversation = new Conversation(main);
    const q = main.dataset.q;
    if (q && first && !first.querySelector(".status.error")) conversation.ask(q, first);
  });
})();
