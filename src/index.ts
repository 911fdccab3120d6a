// Public API for embedding gatehouse: load a configuration, build the app, or serve it.
export { type App, type AppDeps, buildApp } from './app.js';
export { type LoadOutcome, loadConfig } from './config/load.js';
export type { Config } from './config/options.js';
export { GatehouseError } from './errors.js';
export { type Running, serve } from './serve.js';
export type { Session } from './sessions/session.js';
