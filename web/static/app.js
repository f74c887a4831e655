// Progressive enhancement: a form marked data-autosubmit re-submits itself when a choice changes.
// Without JavaScript the form's "Update" button does the same.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    var timer = null;
    form.addEventListener("change", function (event) {
      var target = event.target;
      window.clearTimeout(timer);
      var delay = target.type === "number" ? 400 : 0;
      timer = window.setTimeout(function () {
        if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
      }, delay);
    });
  });
});
