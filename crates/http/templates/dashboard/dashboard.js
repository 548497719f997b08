// Storefront dashboard: small progressive enhancements. Every page works without this file.
"use strict";

// Pages marked data-refresh="N" (approvals, orders in progress) reload every N seconds, unless
// the owner is typing in one of their fields.
(function refresh() {
  const main = document.querySelector("main[data-refresh]");
  if (!main) return;
  const seconds = Number(main.dataset.refresh) || 5;
  setInterval(() => {
    const typing = [...document.querySelectorAll("main input:not([type=hidden]), main textarea")]
      .some((el) => el === document.activeElement || (el.value && !el.readOnly));
    if (!typing) window.location.reload();
  }, seconds * 1000);
})();

// Forms marked data-confirm ask before they post (kill switch, revoke, terminate).
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

// The rule form shows only the parameters of the chosen kind.
(function ruleParameters() {
  const kind = document.getElementById("rule-kind");
  if (!kind) return;
  const update = () => {
    document.querySelectorAll("#rule-form [data-kinds]").forEach((field) => {
      const applies = field.dataset.kinds.split(" ").includes(kind.value);
      field.hidden = !applies;
      field.querySelectorAll("input, select").forEach((input) => { input.disabled = !applies; });
    });
  };
  kind.addEventListener("change", update);
  update();
})();
