// Public surface of the configuration module.
export { formatDuration, parseDuration } from './duration.js';
export { renderFlagsMarkdown, renderHelp } from './help.js';
export { type ListenAddress, parseListenAddress } from './listen.js';
export { type LoadOutcome, loadConfig } from './load.js';
export {
  type Config,
  type ConfigField,
  configSchema,
  HELP_GROUPS,
  type HelpGroup,
  OPTION_LIST,
  OPTIONS,
  type OptionDef,
  SIGNING_ALGS,
  type Support,
} from './options.js';
export { cookieSecretError, cookieSecretKey, generateCookieSecret, maskSecret } from './secret.js';
export { parseStaticUpstream, staticUpstreamCode } from './upstream.js';
