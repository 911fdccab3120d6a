// Client authentication at the token endpoint: basic/post choice, RFC 6749 form-encoding, the invalid_client fallback (issue #21).
import { type ClientAuth, ClientSecretPost } from 'openid-client';
import { queryEscape } from './params.js';
import { oauthErrorCode } from './tokens.js';

/** `--client-auth-method` (gatehouse-only). */
export type ClientAuthOption = 'auto' | 'basic' | 'post';
export type ClientAuthMethod = 'basic' | 'post';

/**
 * RFC 6749 §2.3.1 client_secret_basic: client id and secret are form-encoded (Appendix B: unreserved characters
 * stay as they are, space becomes `+`) before base64. openid-client also escapes `-_.~!*'()`, which providers
 * comparing the raw value (LemonLDAP::NG 2.16) refuse; oauth2-proxy uses Go's url.QueryEscape, as here.
 */
export function clientSecretBasic(secret: string): ClientAuth {
  return (_as, client, _body, headers) => {
    const credentials = `${queryEscape(client.client_id)}:${queryEscape(secret)}`;
    headers.set('authorization', `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`);
  };
}

/**
 * The token-endpoint authentication of one discovered provider. `auto` starts from what discovery advertises
 * (RFC 8414 §2: nothing advertised means client_secret_basic) and may switch once from basic to post when the
 * provider refuses basic with `invalid_client`; the switch is kept for as long as post works.
 */
export interface ClientAuthState {
  /** The ClientAuth given to openid-client: it always applies the current method. */
  readonly auth: ClientAuth;
  current(): ClientAuthMethod;
  /** Switches basic → post if this provider may use post; true when it switched. */
  fallBack(): boolean;
  /** Post was refused too: back to where auto started (the secret is probably wrong, not the encoding). */
  reset(): void;
}

export function createClientAuth(
  option: ClientAuthOption,
  secret: string,
  advertised: unknown,
): ClientAuthState {
  const list = Array.isArray(advertised) ? advertised.filter((m): m is string => typeof m === 'string') : [];
  const basicOk = list.length === 0 || list.includes('client_secret_basic');
  const postOk = list.length === 0 || list.includes('client_secret_post');
  const initial: ClientAuthMethod =
    option === 'post' ? 'post' : option === 'basic' ? 'basic' : !basicOk && postOk ? 'post' : 'basic';
  const canFallBack = option === 'auto' && initial === 'basic' && postOk;
  const basic = clientSecretBasic(secret);
  const post = ClientSecretPost(secret);
  let method = initial;
  return {
    auth: (as, client, body, headers) => (method === 'post' ? post : basic)(as, client, body, headers),
    current: () => method,
    fallBack: () => {
      if (!canFallBack || method === 'post') return false;
      method = 'post';
      return true;
    },
    reset: () => {
      method = initial;
    },
  };
}

/**
 * Runs one token-endpoint request; when it fails with `invalid_client` under client_secret_basic and `auto` allows
 * it, runs it once more with client_secret_post (oauth2-proxy's auto-detection). An authorization code is not
 * spent by a request whose client authentication failed, so the retry may reuse it.
 */
export async function withClientAuthFallback<T>(
  state: ClientAuthState,
  call: () => Promise<T>,
  log: { warn(o: object, msg: string): void; info(o: object, msg: string): void },
): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (oauthErrorCode(e) !== 'invalid_client' || !state.fallBack()) throw e;
    log.warn(
      { event: 'client_auth_fallback' },
      'the IdP refused client_secret_basic (invalid_client); retrying with client_secret_post',
    );
  }
  try {
    const r = await call();
    log.info({ event: 'client_auth_post' }, 'client_secret_post accepted; using it from now on');
    return r;
  } catch (e) {
    if (oauthErrorCode(e) === 'invalid_client') state.reset();
    throw e;
  }
}
