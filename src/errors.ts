// Stable error codes shared by configuration, sessions and routes (DESIGN.md rule 4).

export type ErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_COOKIE_SECRET_LENGTH'
  | 'ERR_REDIRECT_INVALID'
  | 'ERR_SESSION_STORE'
  | 'ERR_OIDC_DISCOVERY'
  | 'ERR_OIDC_EXCHANGE'
  | 'ERR_OIDC_REFRESH'
  | 'ERR_CSRF';

/** An error with a stable `code` that tests and log lines can match on. */
export class GatehouseError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'GatehouseError';
  }
}
