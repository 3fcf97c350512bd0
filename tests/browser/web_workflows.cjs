// The web page's Workflows tab in a real browser (Debian's chromium, driven by playwright-core)
// against `conveyor serve` on the synced demo: both workflows are listed; weekly_digest runs
// and posts to the digest feed; ticket_triage waits for an approval, Approve resumes it and it
// posts to the triage feed; a bad input shows the server's reason; hostile text stays text.
// Run by `tests/it/browser.rs`:
//   node tests/browser/web_workflows.cjs BASE_URL SCREENSHOT_DIR
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

// Opens the Run form of a workflow, types the input and starts it.
async function start(page, name, input) {
  const card = page.locator('#wfList .card', { has: page.locator('h3', { hasText: name }) });
  const form = card.locator('form');
  if (!(await form.isVisible())) await card.getByRole('button', { name: 'Run', exact: true }).click();
  const prefill = await form.locator('textarea').inputValue();
  await form.locator('textarea').fill(input);
  await form.getByRole('button', { name: 'Start run' }).click();
  return { card, form, prefill };
}

// Waits until the open run's state is `state`; the page's own refresh brings it.
async function runState(page, state, timeout) {
  await page.waitForFunction(
    (s) => {
      const b = document.querySelector('#wfRun:not([hidden]) .run-state');
      return b && b.textContent === s;
    },
    state,
    { timeout: timeout || 15000 },
  );
}

async function feedHas(page, name, text) {
  await page.locator('.feedPick[data-feed="' + name + '"]').click();
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#feedPosts li .text')].some((p) => p.textContent.includes(t)),
    text,
    { timeout: 15000 },
  );
  return page.locator('#feedPosts li .text').first().textContent();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu'],
  });
  const seen = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      // The refused input's 400 is expected; any other console error is not.
      if (m.type() === 'error' && !/status of 400/.test(m.text())) errors.push('console: ' + m.text());
    });
    await page.goto(base + '/', { waitUntil: 'load' });
    seen.chat_first = await page.locator('#input').isVisible();

    // 1. The tab lists both workflows with their triggers.
    await page.getByRole('link', { name: 'Workflows' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#wfList .card').length >= 2, null, { timeout: 15000 });
    seen.chat_hidden = !(await page.locator('#input').isVisible());
    seen.workflows = await page.locator('#wfList .card h3').allTextContents();
    seen.triage_triggers = await page
      .locator('#wfList .card', { has: page.locator('h3', { hasText: 'ticket_triage' }) })
      .locator('.chip')
      .allTextContents();

    // 2. weekly_digest runs to the end; its steps are listed; the digest feed has its post.
    const digest = await start(page, 'weekly_digest', '{}');
    seen.prefill = digest.prefill;
    await runState(page, 'succeeded');
    seen.digest_state = await page.locator('#wfRun .run-state').textContent();
    seen.digest_steps = await page.locator('#wfRun .steps td.path').allTextContents();
    seen.digest_post = await feedHas(page, 'digest', 'Revenue by plan');
    if (shots) await page.screenshot({ path: shots + '/web-workflows-digest.png', fullPage: true });

    // 3. ticket_triage waits on its approval; Approve lets it finish and post.
    await start(page, 'ticket_triage', '{"title": "Can I get a refund?", "customer": "Acme"}');
    await runState(page, 'waiting');
    seen.triage_waiting = await page.locator('#wfRun .run-state').textContent();
    const approveRow = page.locator('#wfRun .steps tbody tr', { has: page.locator('td.path', { hasText: /^approve$/ }) });
    seen.approve_buttons = await approveRow.locator('.actions button').allTextContents();
    if (shots) await page.screenshot({ path: shots + '/web-workflows-approval.png', fullPage: true });
    await approveRow.getByRole('button', { name: 'Approve' }).click();
    await runState(page, 'succeeded', 20000);
    seen.triage_after = await page.locator('#wfRun .run-state').textContent();
    seen.triage_steps = await page.locator('#wfRun .steps td.path').allTextContents();
    seen.triage_post = await feedHas(page, 'triage', 'approved by');

    // 4. A refused input: the server's reason beside the form.
    const bad = await start(page, 'ticket_triage', '{}');
    await bad.form.locator('.err').filter({ hasText: /\S/ }).waitFor({ timeout: 15000 });
    seen.bad_input_error = await bad.form.locator('.err').textContent();

    // 5. Hostile text from the API stays text (in the runs table, the run and the feed).
    await bad.form.locator('textarea').fill(JSON.stringify({ title: '<img src=x onerror="window.__pwned=1">', customer: '<b>Evil</b>' }));
    await bad.form.getByRole('button', { name: 'Start run' }).click();
    await runState(page, 'waiting');
    seen.hostile_post = await feedHas(page, 'triage', '<img src=x');
    seen.hostile_markup = await page.evaluate(() => ({
      pwned: window.__pwned === 1,
      imgs: document.querySelectorAll('#wfView img').length,
      bold: document.querySelectorAll('#wfView b').length,
    }));

    // 6. The runs table: newest first, filtered by workflow, a click opens a run.
    await page.locator('#wfRefresh').click();
    await page.waitForFunction(() => document.querySelectorAll('#runsBody tr').length >= 3, null, { timeout: 15000 });
    seen.runs_workflows = await page.locator('#runsBody tr td:nth-child(2)').allTextContents();
    await page.locator('#fWorkflow').selectOption('weekly_digest');
    await page.waitForFunction(
      () => [...document.querySelectorAll('#runsBody tr td:nth-child(2)')].every((t) => t.textContent === 'weekly_digest'),
      null,
      { timeout: 15000 },
    );
    seen.filtered = await page.locator('#runsBody tr td:nth-child(2)').allTextContents();
    await page.locator('#runsBody tr').first().click();
    await runState(page, 'succeeded');
    seen.clicked_workflow = await page.locator('#wfRun dl dd').first().textContent();
    if (shots) await page.screenshot({ path: shots + '/web-workflows-runs.png', fullPage: true });

    // 7. Back to the chat.
    await page.getByRole('link', { name: 'Chat' }).click();
    seen.chat_back = await page.locator('#input').isVisible();
    seen.page_errors = errors;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
})().catch((e) => fail(String((e && e.stack) || e)));
