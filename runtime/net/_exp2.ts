import { Packr } from 'msgpackr'
const p = new Packr({ moreTypes: true, useRecords: false })
const b = p.pack([0, { x: new Float32Array([1, 2, 3]), i: new Int32Array([4]), u: new Uint8Array([1,2]), d: new Date(0), big: 2n**70n }])
console.log(b.length, p.unpack(b))
const extra = Buffer.concat([b, Buffer.from([1, 2, 3])])
try { console.log('trailing', p.unpack(extra)) } catch (e: any) { console.log('trailing err', e.message) }
try { console.log(p.unpack(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]))) } catch (e: any) { console.log('arr32', e.message) }
try { console.log(p.unpack(Buffer.alloc(100000, 0x91))) } catch (e: any) { console.log('deep', e.name, e.message) }
try { console.log(p.unpack(Buffer.from([0xc1]))) } catch (e: any) { console.log('c1', e.name, e.message) }
try { console.log(p.unpack(Buffer.from([]))) } catch (e: any) { console.log('empty', e.name, e.message) }
console.log(p.unpack(p.pack(new Error('boom'))), p.unpack(p.pack(/ab+c/g)), p.unpack(p.pack(new Set([1]))))
