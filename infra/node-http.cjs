// node:http for the bundles, read without an ESM import (BUNDLE.alias in infra/provider-function.ts points every
// `node:http` and `http` import here). An ESM import of node:http reads every export of the module, and three of them
// (WebSocket, CloseEvent, MessageEvent) are getters that load Node's bundled undici: about 14 ms of CPU at every cold
// start, for classes no function uses (nodejs/node#59686). A property read here reads only what the code uses.
module.exports = process.getBuiltinModule('node:http');
