// Copy buttons: <button class="copy" data-copy-target="ID"> copies the text of #ID.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copyTarget);
  if (!source) return;
  const text = source.innerText;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});
// Forms with data-confirm ask before submitting (revoke, rotate, disable).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
// The phone-width menu (pagegrid.css shows the button below 760 px): the button opens and closes
// the navigation; Escape closes it and gives the focus back to the button.
const header = document.querySelector("header.top");
const menuButton = header && header.querySelector(".menu-toggle");
if (menuButton) {
  const setOpen = (open) => {
    header.classList.toggle("open", open);
    menuButton.setAttribute("aria-expanded", String(open));
  };
  menuButton.addEventListener("click", () => setOpen(!header.classList.contains("open")));
  header.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && header.classList.contains("open")) {
      setOpen(false);
      menuButton.focus();
    }
  });
}
