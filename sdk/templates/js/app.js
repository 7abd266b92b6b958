// `{{name}}`: a FerrisFX function in JavaScript.
//
// Answers any event with one `com.example.{{name}}.greeted` event whose JSON data is
// `{"greeting": "Hello, <name>!"}`, where `<name>` is the `name` string of the input's JSON data,
// or `world` when there is none. Logs `hello from FerrisFX` with the event's id and type. The
// greeting word is the `greeting` configuration value (default `Hello`, in `fx.toml`; a handler
// can set another).
//
// Built into a component by componentize-js against `wit/function.wit` (world `function`):
// `npm run build` (see build.mjs).

import { get as configValue } from 'ferrisfx:function/config@0.1.0';
import { log } from 'ferrisfx:function/host@0.1.0';

// The source of the events this function produces.
const SOURCE = '/functions/{{name}}';
// The type of the events this function produces.
const GREETED = 'com.example.{{name}}.greeted';

// `data.name` when the data is JSON with a `name` string, else `world`.
function nameOf(event) {
  try {
    const data = JSON.parse(new TextDecoder().decode(event.data ?? new Uint8Array()));
    if (data !== null && typeof data === 'object' && typeof data.name === 'string') {
      return data.name;
    }
  } catch {
    // Not JSON: greet the world.
  }
  return 'world';
}

// Handles one event. Return the events to publish; throw to fail the execution.
export function handle(event) {
  log('info', 'hello from FerrisFX', [
    ['event_id', event.id],
    ['event_type', event.type],
  ]);
  const word = configValue('greeting') ?? 'Hello';
  const greeting = JSON.stringify({ greeting: `${word}, ${nameOf(event)}!` });
  return [
    {
      id: `${event.id}-greeting`,
      source: SOURCE,
      type: GREETED,
      datacontenttype: 'application/json',
      extensions: [],
      data: new TextEncoder().encode(greeting),
    },
  ];
}
