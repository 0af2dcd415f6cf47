// The operator console as a person sees it, in headless Chromium (Debian's, driven by
// playwright-core). Arguments: the server's base URL, its token, the number of executions
// the test ran, and a folder for the screenshots. Prints "ok: ..." for each check.
const { chromium } = require('playwright-core');

const [base, token, executions, shots] = process.argv.slice(2);

function check(condition, what) {
  if (!condition) throw new Error(`failed: ${what}`);
  console.log(`ok: ${what}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CODEMODE_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });

    const first = await page.goto(`${base}/console`);
    check(first.status() === 401, 'without a session the console asks for the token');
    check(await page.locator('input[name=token]').isVisible(), 'a token field is shown');
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    check((await page.getByRole('alert').textContent()).includes("not an operator's token of this server"),
      'a wrong token is refused with a message');
    await page.fill('input[name=token]', token);
    await Promise.all([page.waitForURL(`${base}/console`), page.click('button[type=submit]')]);
    check((await page.locator('h1').textContent()) === 'codemode-mcp console',
      'the right token opens the console');
    const cookies = await page.context().cookies();
    check(cookies.length === 1 && cookies[0].httpOnly && !cookies[0].value.includes(token),
      'the session cookie is HttpOnly and does not hold the token');

    const audit = await page.locator('#audit').textContent();
    check(audit.includes(`Verified up to record ${executions}`),
      `the audit chain is verified up to record ${executions}: ${audit.trim()}`);
    const toy = page.locator('#upstreams tbody tr', { hasText: 'toy' });
    check((await toy.textContent()).includes('ready'), 'the toy upstream is shown ready');
    const rows = page.locator('#executions tbody tr');
    check((await rows.count()) === Number(executions), `all ${executions} executions are listed`);
    check((await rows.first().textContent()).includes(`#${executions}`), 'newest first');
    const listed = await page.locator('#executions').textContent();
    check(listed.includes('error: policy') && listed.includes('http'),
      'outcomes and origins are listed');
    const firstRun = await page.locator('#executions tbody tr', { hasText: '#1' }).first().textContent();
    check(firstRun.includes('const r = await tools.toy.add({ a: 2, b: 3 });') && firstRun.includes('toy.add'),
      `an execution's row shows its first line and the tools it called: ${firstRun}`);
    const failed = await rows.first().textContent();
    check(failed.includes('const x = 1;') && failed.includes('error: runtime at 2:'),
      `a failed execution's row shows where: ${failed}`);
    const flags = await page.locator('#flags').textContent();
    check(flags.includes('repeat') && flags.includes('ran 2 times'), 'the repeat flag is shown with what was seen');
    const cost = await page.locator('#cost').textContent();
    check(cost.includes('bearer:') && cost.includes('Top programs by CPU') && cost.includes('await tools.toy.add'),
      `the cost by principal and the top programs are shown: ${cost}`);
    await page.screenshot({ path: `${shots}/console.png`, fullPage: true });

    // The first execution called a tool: its page shows the code, the call and the decision.
    await page.click('#executions a[href="/console/executions/1"]');
    check((await page.locator('h1').textContent()) === 'Execution #1', 'an execution opens');
    check((await page.locator('#outcome').textContent()) === 'ok', 'its outcome is shown');
    check((await page.locator('#code pre').textContent()).includes('await tools.toy.add({ a: 2, b: 3 })'),
      'its code is shown');
    const call = await page.locator('#calls tbody tr').first().textContent();
    check(call.includes('toy.add') && call.includes('allowed'), `its call and the policy decision are shown: ${call}`);
    await page.screenshot({ path: `${shots}/console-execution.png`, fullPage: true });

    await page.goto(`${base}/console/executions/2`);
    check((await page.locator('#outcome').textContent()).startsWith('error: policy at 1:'), 'a refused program shows kind policy, and where');
    check((await page.locator('#error').textContent()).includes('denies'), 'and why the policy refused it');

    // Code is shown as text, never as markup.
    await page.goto(`${base}/console/executions/5`);
    check((await page.locator('#code pre').textContent()).includes('<b id="injected">'),
      'markup in a program is shown as text');
    check((await page.locator('#injected').count()) === 0, 'and never rendered');

    const missing = await page.goto(`${base}/console/executions/999`);
    check(missing.status() === 404 && (await page.locator('h1').textContent()).includes('No execution #999'),
      'an unknown execution is a 404 page that says so');
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
