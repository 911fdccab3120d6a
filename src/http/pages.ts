// The HTML pages gatehouse renders: the sign-in page and the shared error page (COMPAT.md §1.7, §1.13).

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c] ?? c);
}

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);padding:2rem 2.5rem;max-width:28rem;text-align:center}
h1{font-size:1.4rem;margin:.2rem 0 1rem}p{line-height:1.4}button,.button{font:inherit;background:#1f5fbf;color:#fff;border:0;border-radius:4px;padding:.6rem 1.2rem;cursor:pointer;text-decoration:none;display:inline-block}
button:focus,.button:focus{outline:3px solid #f0b400;outline-offset:2px}footer{margin-top:1.5rem;font-size:.8rem;color:#5a6170}.logo{max-width:12rem;max-height:6rem}
label{display:block;text-align:left;margin:.5rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}
small{color:#5a6170}`;

function layout(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>
`;
}

export interface SignInPageOptions {
  readonly proxyPrefix: string;
  readonly providerName: string;
  /** Banner text; '-' hides it. Already defaulted by the caller. */
  readonly banner: string;
  /** Footer text; '-' hides it. */
  readonly footer: string;
  /** Logo: an https URL, a data: URI, or '' for none. */
  readonly logoSrc: string;
  readonly version: string;
}

/** Compiles the sign-in page once; the per-request part is only the escaped `rd` value. */
export function createSignInPage(o: SignInPageOptions): (redirect: string) => string {
  const logo = o.logoSrc ? `<img class="logo" src="${escapeHtml(o.logoSrc)}" alt="">` : '';
  const banner = o.banner === '-' || o.banner === '' ? '' : `<p>${escapeHtml(o.banner)}</p>`;
  const footer =
    o.footer === '-'
      ? ''
      : `<footer>${o.footer ? escapeHtml(o.footer) : `Secured with gatehouse ${escapeHtml(o.version)}`}</footer>`;
  const head = layout(
    'Sign In',
    `${logo}<h1>Sign in</h1>${banner}<form method="GET" action="${escapeHtml(o.proxyPrefix)}/start">
<input type="hidden" name="rd" value="`,
  );
  const tail = `"><button type="submit">Sign in with ${escapeHtml(o.providerName)}</button></form>${footer}`;
  const [before, after] = head.split('</main>') as [string, string];
  return (redirect) => `${before}${escapeHtml(redirect)}${tail}</main>${after}`;
}

/** The shared error page: status, message, request id and a way back (COMPAT.md §1.13). */
export function renderErrorPage(p: {
  status: number;
  title: string;
  message: string;
  requestId: string;
  back: string;
}): string {
  return layout(
    `${p.status} ${p.title}`,
    `<h1>${p.status} ${escapeHtml(p.title)}</h1><p>${escapeHtml(p.message)}</p>
<p><a class="button" href="${escapeHtml(p.back)}">Go back</a></p><footer>Request ID: <code>${escapeHtml(p.requestId)}</code></footer>`,
  );
}
