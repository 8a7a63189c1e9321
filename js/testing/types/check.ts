// Compile-time checks of zapsocket.d.ts (js/test/types.test.mjs runs tsc on this file).
// Lines marked @ts-expect-error must fail to type-check; the rest must pass.
import connect, {
  connect as named, Socket, ZapError, type Member, SUBPROTOCOLS, SUBPROTOCOL, parseFrame, isBytes,
} from '../../zapsocket.js';

// The shape js/types.generated.d.ts has (docs/PROTOCOL.md "TypeScript declarations").
type ChatMessage = { text: string; room?: string };
type ChatRelay = { from: string; text: string; room: string };
type ChatReply = { rooms: string[] };
type AddInput = { a: number; b: number };
type PresenceEvent = { room: string; member: { id: string; data: { name: string } } };
interface ClientEvents {
  chat: { data: ChatMessage; reply: ChatReply };
  echo: { data: unknown; reply: unknown };
  ping: { data: null; reply: string };
  upload: { data: { name: string; bytes: Uint8Array }; reply: Uint8Array };
}
interface ServerEvents {
  chat: ChatRelay;
  file: { name: string; bytes: Uint8Array };
  $joined: PresenceEvent;
  $left: PresenceEvent;
}
interface Procedures {
  add: { input: AddInput; output: number };
  sleep: { input: { ms: number }; output: null };
  store: { input: { parts: Uint8Array[] }; output: Uint8Array };
}
type Api = { ClientEvents: ClientEvents; ServerEvents: ServerEvents; Procedures: Procedures };

export async function typed(WebSocket: any) {
  const socket = connect<Api>('ws://127.0.0.1:1/ws', { WebSocket, query: { name: 'ada' } });
  const sum: number = await socket.call('add', { a: 1, b: 2 });
  // @ts-expect-error wrong input type
  await socket.call('add', { a: '1', b: 2 });
  // @ts-expect-error unknown procedure
  await socket.call('nope', {});
  // @ts-expect-error the output is a number
  const notString: string = await socket.call('add', { a: 1, b: 2 });

  const reply: ChatReply = await socket.emitWithAck('chat', { text: 'hi' }, { timeout: 1000 });
  socket.emit('chat', { text: 'hi', room: 'lobby' });
  socket.emit('ping'); // data may be left out when it is null
  // @ts-expect-error missing text
  socket.emit('chat', { room: 'lobby' });
  // @ts-expect-error not a client event
  socket.emit('unknown', 1);
  // @ts-expect-error protocol names are not application events
  socket.emit('$join', { room: 'x' });

  socket.on('chat', (msg, meta) => {
    const from: string = msg.from;
    const offsets: Record<string, number> | undefined = meta.rooms;
    // @ts-expect-error no such field
    msg.nope;
    return from + offsets;
  });
  socket.on('joined', ({ room, member }) => {
    const name: string = member.data.name;
    return room + name;
  });
  socket.on('connect', ({ session, recovered }) => void [session, recovered]);
  socket.on('reconnecting', ({ attempt, delay }) => void [attempt + delay]);
  socket.on('reconnect', (info) => void [info.recovered, info.members['lobby']?.[0]?.data.name]);
  socket.on('error', (e: ZapError) => void e.code);
  socket.on('resync', ({ rooms, epoch }) => void [rooms.map((r) => r.length), epoch?.length]);
  // @ts-expect-error resync's rooms are names, not offsets
  socket.on('resync', ({ rooms }: { rooms: Record<string, number> }) => void rooms);
  const node: string | null = socket.node;
  // @ts-expect-error node is read-only (it comes from $hello)
  socket.node = 'n-1';
  // @ts-expect-error not a server event
  socket.on('whatever', () => {});

  // Byte arrays (version 2): where a type says Uint8Array, any byte array may be sent.
  const back: Uint8Array = await socket.emitWithAck('upload', { name: 'a', bytes: new Uint8Array([1]) });
  socket.emit('upload', { name: 'b', bytes: new ArrayBuffer(2) });
  socket.emit('upload', { name: 'c', bytes: new DataView(new ArrayBuffer(2)) });
  const stored: Uint8Array = await socket.call('store', { parts: [new Uint8Array(1), new Float32Array(1).buffer] });
  // @ts-expect-error not bytes
  socket.emit('upload', { name: 'd', bytes: 'text' });
  // @ts-expect-error an array of numbers is not typed as bytes
  await socket.call('store', { parts: [[1, 2]] });
  socket.on('file', (f) => {
    const received: Uint8Array = f.bytes;
    return received.byteLength + f.name.length;
  });

  const members: Member<{ name: string }>[] = await socket.join('lobby');
  const state: 'connecting' | 'connected' | 'reconnecting' | 'disconnected' = socket.state;
  socket.off('chat');
  socket.close();
  return [sum, notString, reply, members, state, node, back, stored];
}

export async function untyped(WebSocket: any) {
  const socket: Socket = named('ws://127.0.0.1:1/ws', { WebSocket });
  const anything = await socket.call('whatever', { x: 1 });
  socket.emit('anything', [1, 2, 3]);
  socket.emit('anything', { bytes: new Uint8Array(3), more: [new ArrayBuffer(1)] });
  socket.on('anything', (data: any) => data.deep.field);
  await socket.emitWithAck('q', 1);
  const m = await socket.members('room');
  return [anything, m[0]?.id];
}

export function options() {
  connect({ url: '/ws', reconnection: false, ackTimeout: 500, maxBuffered: 10 });
  // @ts-expect-error unknown option types
  connect('/ws', { reconnection: 'yes' });
}

export function lowLevel(frame: ArrayBuffer, value: unknown) {
  const offered: readonly string[] = SUBPROTOCOLS;
  const v1: 'zap.v1' = SUBPROTOCOL;
  const env = parseFrame(frame);
  if (isBytes(value)) void value.byteLength;
  return [offered, v1, env.kind];
}
