// The search page's Patterns tab: the top templates of the search's lines
// (GET /_lookout/patterns), each with its line count and newest line; clicking one
// searches for its lines (a query for the template's literal tokens). Loaded before
// app.js, whose helpers (h, api, errorBox) it uses when called.
"use strict";

const PATTERNS_SHOWN = 50;

/** The Patterns tab of a search `state`; `filter(lucene)` narrows the search to a pattern. */
async function patternsView(state, filter) {
  if (state.dsl) {
    return h("p", { class: "empty" }, "Patterns are mined for Lucene queries: write the query in Lucene to see them.");
  }
  const search = new URLSearchParams({ index: state.index, q: state.q || "*", from: state.from, to: state.to,
    size: String(PATTERNS_SHOWN) });
  let answer;
  try {
    answer = await api(`/_lookout/patterns?${search}`);
  } catch (error) {
    return errorBox(error, state.q);
  }
  if (!answer.patterns.length) {
    return h("p", { class: "empty" }, "No log lines with a message field in this range.");
  }
  const lines = answer.sampled
    ? `the newest ${answer.lines_mined.toLocaleString()} of ${answer.lines_matched.toLocaleString()} matching lines (a sample)`
    : `all ${answer.lines_mined.toLocaleString()} matching lines`;
  const shown = answer.templates > answer.patterns.length ? `, the ${answer.patterns.length} largest shown` : "";
  return h("div", {},
    h("p", { id: "patterns-summary", class: "empty", style: "padding:0 0 8px" },
      `${answer.templates.toLocaleString()} pattern${answer.templates === 1 ? "" : "s"} in ${lines}${shown}. ` +
      "Placeholders: <NUM> <DUR> <IP> <UUID> <HEX> <ID> <STR>, and <*> where lines differ. Click a pattern to search its lines."),
    h("table", { id: "patterns" },
      h("thead", {}, h("tr", {}, h("th", {}, "Lines"), h("th", {}, "Pattern"), h("th", {}, "Newest line"))),
      h("tbody", {}, answer.patterns.map((pattern) => h("tr", { class: "pattern" },
        h("td", { class: "count" }, pattern.count.toLocaleString()),
        h("td", {}, h("button", { type: "button", class: "plain template", title: `search ${pattern.query}`,
          onclick: () => filter(pattern.query) }, pattern.template)),
        h("td", { class: "sample" }, pattern.sample))))));
}
