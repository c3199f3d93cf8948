// SLOs: every SLO rule's objective, SLI over its period, error budget left, and a chart
// of its burn rates. Reads the rules API (the `slo` of each rule) and the `slo_*` PromQL
// series, as anyone can. Loaded after app.js, whose helpers and page table it uses.
"use strict";

function slosPage(main) {
  const p = params();
  const state = { from: p.get("from") || "now-6h", to: p.get("to") || "now" };
  const from = h("input", { id: "slos-from", value: state.from, size: 18, "aria-label": "From" });
  const to = h("input", { id: "slos-to", value: state.to, size: 18, "aria-label": "To" });
  const form = h("form", { class: "bar", onsubmit: (event) => {
    event.preventDefault();
    go("/ui/slos", new URLSearchParams({ from: from.value.trim() || "now-6h", to: to.value.trim() || "now" }).toString());
  } }, h("label", {}, "Burn rates from", from), h("label", {}, "To", to), h("button", { type: "submit" }, "Show"));
  const list = h("section", { id: "slos" });
  main.append(form, list);

  // the value of each series of an instant query, by its labels other than the name
  async function instant(expr, time) {
    const answer = await api(`/api/v1/query?${new URLSearchParams({ query: expr, time: time / 1000 })}`);
    return answer.data.result.map((sample) => {
      const { __name__: _name, slo: _slo, ...group } = sample.metric;
      return { group: JSON.stringify(group), labels: group, value: Number(sample.value[1]) };
    });
  }
  const percent = (value) => Number.isFinite(value) ? `${(value * 100).toFixed(3)} %` : "—";

  async function run() {
    try {
      const answer = await api("/_lookout/rules");
      const slos = (answer.rules || []).filter((rule) => rule.rule && rule.rule.slo);
      if (!slos.length) {
        list.replaceChildren(h("p", { class: "empty" }, "No SLOs yet: add a rule file with an \"slo\" object to queries/ (see docs/rules.md, SLOs)."));
        return;
      }
      const now = Date.now(), start = parseTime(state.from, now), end = parseTime(state.to, now);
      const step = Math.max(60, Math.round((end - start) / 1000 / 250));
      const sections = [];
      for (const rule of slos) {
        const slo = rule.rule.slo, selector = `{slo="${rule.name}"}`;
        const [sli, budget] = await Promise.all([instant(`slo_sli${selector}`, now), instant(`slo_error_budget_remaining${selector}`, now)]);
        const budgets = new Map(budget.map((entry) => [entry.group, entry.value]));
        const burn = await api(`/api/v1/query_range?${new URLSearchParams({ query: `slo_burn_rate${selector}`, start: start / 1000, end: end / 1000, step })}`);
        sections.push(h("article", { class: "slo", "data-slo": rule.name },
          h("h2", {}, rule.name),
          h("p", {}, `Objective ${slo.objective} % over ${slo.period || "30d"}`, rule.rule.description ? ` — ${rule.rule.description}` : ""),
          sli.length ? h("table", {},
            h("thead", {}, h("tr", {}, ["Group", "SLI over the period", "Error budget left"].map((title) => h("th", {}, title)))),
            h("tbody", {}, sli.map((entry) => {
              const left = budgets.get(entry.group);
              return h("tr", {},
                h("td", {}, Object.keys(entry.labels).length ? labelsView(entry.labels) : "all"),
                h("td", { class: "slo-sli" }, percent(entry.value)),
                h("td", { class: `slo-budget${left < 0 ? " error" : ""}` }, percent(left)));
            }))) : h("p", { class: "empty" }, "No events in the period yet."),
          h("h3", {}, "Burn rate (1 spends the budget in exactly the period)"),
          burn.data.result.length ? lineChart(burn.data.result, start, end) : h("p", { class: "empty" }, "No events in this range.")));
      }
      list.replaceChildren(...sections);
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }
  refresh = run;
  run();
}

pages.slos = slosPage;
// app.js may have drawn the page before this script registered it
if (session !== null && location.pathname.replace(/^\/ui\/?/, "").split("/")[0] === "slos") route();
