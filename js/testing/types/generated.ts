// Compile-time check that zapsocket.d.ts takes the maps of js/types.generated.d.ts (the
// declarations generated from zap serve's Rust types). Run by js/test/types.test.mjs
// when that file exists.
import { connect } from '../../zapsocket.js';
import type { ClientEvents, ServerEvents, Procedures } from '../../types.generated.js';

type Api = { ClientEvents: ClientEvents; ServerEvents: ServerEvents; Procedures: Procedures };

export async function generated(WebSocket: any) {
  const socket = connect<Api>('ws://127.0.0.1:1/ws', { WebSocket });
  const sum: number = await socket.call('add', { a: 2, b: 3 });
  // @ts-expect-error add takes numbers
  await socket.call('add', { a: 'two', b: 3 });
  const reply = await socket.emitWithAck('chat', { text: 'hi', room: 'lobby' });
  const rooms: string[] = reply.rooms;
  await socket.emitWithAck('set_name', { name: 'ada' });
  socket.on('chat', (msg) => {
    const line: string = `${msg.from}: ${msg.text} (${msg.room})`;
    return line;
  });
  return [sum, rooms];
}
