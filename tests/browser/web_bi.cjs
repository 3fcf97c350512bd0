// The web page in a real browser (Debian's chromium, driven by playwright-core): a BI question
// gets its table, chart, CSV download and "Show SQL"; a question back gets its options as
// buttons, and clicking one asks it. Run by `tests/it/browser.rs`:
//   node tests/browser/web_bi.cjs BASE_URL SCREENSHOT_DIR
// with NODE_PATH pointing at a node_modules that holds playwright-core. Prints one JSON line
// of what it saw; exits non-zero (with the reason) when the page does not do what it should.
'use strict';
const { chromium } = require('playwright-core');

const [base, shots] = process.argv.slice(2);
const chromiumPath = process.env.CONVEYOR_CHROMIUM || '/usr/bin/chromium';

function fail(why) {
  console.error(why);
  process.exit(1);
}

async function ask(page, text, answers) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#log .msg.assistant').length >= n,
    answers,
    { timeout: 30000 },
  );
  return page.locator('#log .msg.assistant').nth(answers - 1);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu'],
  });
  const seen = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(base + '/', { waitUntil: 'load' });

    // 1. A group-by: table, chart, CSV, SQL.
    const a = await ask(page, 'revenue by plan', 1);
    seen.headers = await a.locator('table th').allTextContents();
    seen.first_row = await a.locator('table tbody tr').first().locator('td').allTextContents();
    seen.chart_src = ((await a.locator('img.chart').getAttribute('src')) || '').slice(0, 26);
    seen.chart_alt = await a.locator('img.chart').getAttribute('alt');
    const csv = decodeURIComponent(
      ((await a.locator('a[download]').getAttribute('href')) || '').replace(/^data:text\/csv;charset=utf-8,/, ''),
    );
    seen.csv_head = csv.split('\n')[0];
    await a.locator('summary', { hasText: 'Show SQL' }).click();
    seen.sql_visible = await a.locator('details pre').isVisible();
    seen.sql_has_group_by = ((await a.locator('details pre').textContent()) || '').includes('GROUP BY');
    const box = await a.locator('img.chart').boundingBox();
    seen.chart_width = box ? Math.round(box.width) : 0;
    if (shots) await page.screenshot({ path: shots + '/web-bi-table.png', fullPage: true });

    // 2. A question back: the option is a button; clicking it asks it.
    const q = await ask(page, 'revenue by regoin', 2);
    seen.clarify_text = (await q.textContent()) || '';
    const buttons = q.locator('.choices button');
    seen.choices = await buttons.allTextContents();
    if (seen.choices.length === 0) fail('no choice buttons: ' + JSON.stringify(seen));
    await buttons.first().click();
    const c = await page.locator('#log .msg.assistant').nth(2);
    await page.waitForFunction(() => document.querySelectorAll('#log .msg.assistant').length >= 3, null, { timeout: 30000 });
    seen.after_click_user = await page.locator('#log .msg.user').nth(2).textContent();
    seen.after_click_headers = await c.locator('table th').allTextContents();
    if (shots) await page.screenshot({ path: shots + '/web-bi-choice.png', fullPage: true });
    seen.page_errors = errors;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
})().catch((e) => fail(String(e && e.stack || e)));
