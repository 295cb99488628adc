import '../polyfill.ts'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

const ka = await generateKeyPair('Ed25519'), kb = await generateKeyPair('Ed25519')
const idb = peerIdFromPrivateKey(kb)
const mk = (k: any, gater: any) => createLibp2p({ privateKey: k, addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify(), ping: ping() }, connectionGater: gater })
const a = await mk(ka, { denyInboundEncryptedConnection: (p: any) => p.equals(idb) })
const b = await mk(kb, {})
const t0 = Date.now()
try { await b.dial(a.getMultiaddrs()[0], { signal: AbortSignal.timeout(5000) }); console.log('dial ok??') } catch (e: any) { console.log('dial err', e.name, e.message, e.cause?.name, e.errors?.map((x: any) => x.name + ':' + x.message), Date.now() - t0) }
try { const s = await b.dialProtocol(a.getMultiaddrs()[0], '/ipfs/ping/1.0.0', { signal: AbortSignal.timeout(5000) }); console.log('dialProtocol ok??') } catch (e: any) { console.log('dialProtocol err', e.name, e.message) }
// unhandled protocol
const c = await mk(await generateKeyPair('Ed25519'), {})
try { await c.dialProtocol(a.getMultiaddrs()[0], '/nope/1', { signal: AbortSignal.timeout(5000) }) } catch (e: any) { console.log('unsupported err', e.name, e.message) }
console.log(a.getMultiaddrs().map(String))
await a.stop(); await b.stop(); await c.stop()
