// Debian's chromium under playwright-core for the browser tests: launched headless with the flags
// this machine needs (no browser download, ever: executablePath is the system's), every console
// error and page error of every page collected so a test can fail on them, and numbered
// screenshots under the build directory.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { tempDir } from './devmesh.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  const profile = tempDir('devmesh-chromium-');
  // launchPersistentContext is what takes a --user-data-dir: a fresh, empty profile per run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    timezoneId: 'UTC',
    locale: 'en-GB',
  });
  const errors = [];
  const watch = (page) => {
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push({ page: page.url(), text: m.text(), location: m.location() });
    });
    page.on('pageerror', (e) => errors.push({ page: page.url(), text: `pageerror: ${e.stack || e.message}` }));
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  return {
    context,
    errors,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

// Screenshots numbered in the order taken: SCREENSHOT_DIR/NN-step.png; each path is printed.
export class Screenshots {
  constructor(prefix = '') {
    this.dir = process.env.SCREENSHOT_DIR || path.resolve('screenshots');
    this.prefix = prefix;
    this.n = 0;
    fs.mkdirSync(this.dir, { recursive: true });
    // A run's screenshots replace the last run's (of this prefix), so none is left from before.
    const mine = new RegExp(`^${prefix}\\d\\d-.*\\.png$`);
    for (const f of fs.readdirSync(this.dir)) if (mine.test(f)) fs.rmSync(path.join(this.dir, f));
    this.paths = [];
  }

  async take(page, step) {
    this.n += 1;
    const file = path.join(this.dir, `${this.prefix}${String(this.n).padStart(2, '0')}-${step}.png`);
    await page.screenshot({ path: file, fullPage: false });
    this.paths.push(file);
    console.log(`screenshot: ${file}`);
    return file;
  }
}
