// What charlm's two pages (the serve page, page.html, and the exported page, charlm/export/page.html)
// do alike, inlined into each as page.css is, so that they say the same thing the same way.
"use strict";

// A setting's number box as a number within the box's own min and max: an empty box or one out of
// range is refused by name before anything is written (an empty box was read as 0: greedy, or no text).
function checkSetting(name, caption) {
  const box = document.getElementById(name), value = box.valueAsNumber;
  if (value >= +(box.min || -Infinity) && value <= +(box.max || Infinity)) return;
  const range = `from ${box.min}${box.max ? ` to ${box.max}` : " up"}${box.value ? `, not ${box.value}` : ""}`;
  throw Object.assign(new Error(`${caption}: give a number ${range}`), { param: name });
}

// The status line once a text ends: what ended it ("done (length)", "stopped"), how many characters
// (code points: a character outside the BMP is one), in how long.
function summary(how, text, seconds) {
  const count = [...text].length, rate = seconds > 0 ? Math.round(count / seconds) : 0;
  const counted = (n) => n.toLocaleString("en-US");  // 4,447 as charlm writes numbers, whatever the browser's locale
  return `${how}: ${counted(count)} characters in ${seconds.toFixed(1)} s (${counted(rate)} characters/s)`;
}
