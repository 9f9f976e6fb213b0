// greet.c is the C test guest for the pln WASM host (package wasm): the same
// greet and echo as the Go guest, written against the Extism kernel imports
// by hand, with no libc and no PDK. Build (see ../build.sh):
//
//   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry \
//     -Wl,--export=greet -Wl,--export=echo -o greet_c.wasm greet.c
//
// An Extism function takes no arguments and returns 0 for success or 1 for
// failure. Its input, output and error live in Extism memory blocks, which
// the guest reaches only through the imports below (offsets are u64).

typedef unsigned long long u64;
typedef unsigned char u8;
typedef int i32;

#define IMPORT(name) __attribute__((import_module("extism:host/env"), import_name(name)))

IMPORT("input_length") u64 extism_input_length(void);
IMPORT("input_load_u8") u8 extism_input_load_u8(u64 offset);
IMPORT("input_load_u64") u64 extism_input_load_u64(u64 offset);
IMPORT("alloc") u64 extism_alloc(u64 length);
IMPORT("store_u8") void extism_store_u8(u64 offset, u8 value);
IMPORT("store_u64") void extism_store_u64(u64 offset, u64 value);
IMPORT("output_set") void extism_output_set(u64 offset, u64 length);
IMPORT("error_set") void extism_error_set(u64 offset);

// store copies n bytes of guest memory into a new Extism block.
static u64 store(const u8 *p, u64 n) {
  u64 off = extism_alloc(n);
  if (off == 0 && n > 0) {
    return 0;
  }
  for (u64 i = 0; i < n; i++) {
    extism_store_u8(off + i, p[i]);
  }
  return off;
}

static u64 cstrlen(const char *s) {
  u64 n = 0;
  while (s[n]) {
    n++;
  }
  return n;
}

static i32 fail(const char *msg) {
  u64 off = store((const u8 *)msg, cstrlen(msg));
  if (off != 0) {
    extism_error_set(off);
  }
  return 1;
}

// echo answers with its input, copied block to block eight bytes at a time.
__attribute__((export_name("echo"))) i32 echo(void) {
  u64 n = extism_input_length();
  u64 out = extism_alloc(n);
  if (out == 0 && n > 0) {
    return fail("echo: out of memory");
  }
  u64 i = 0;
  for (; i + 8 <= n; i += 8) {
    extism_store_u64(out + i, extism_input_load_u64(i));
  }
  for (; i < n; i++) {
    extism_store_u8(out + i, extism_input_load_u8(i));
  }
  extism_output_set(out, n);
  return 0;
}

#define MAX_INPUT 4096
static u8 in[MAX_INPUT];
static u8 out[MAX_INPUT + 32];

// greet answers {"name":"x"} with {"greeting":"hello, x"}. Its JSON reading
// is deliberately small: it finds the string value of the "name" key and
// refuses escapes.
__attribute__((export_name("greet"))) i32 greet(void) {
  u64 n = extism_input_length();
  if (n > MAX_INPUT) {
    return fail("greet: input is over 4096 bytes");
  }
  for (u64 i = 0; i < n; i++) {
    in[i] = extism_input_load_u8(i);
  }
  static const char key[] = "\"name\"";
  u64 k = 0, i = 0;
  for (; i < n && key[k]; i++) {
    k = in[i] == (u8)key[k] ? k + 1 : (in[i] == '"' ? 1 : 0);
  }
  if (key[k]) {
    return fail("greet wants JSON {\"name\":\"...\"}");
  }
  while (i < n && (in[i] == ' ' || in[i] == ':')) {
    i++;
  }
  if (i >= n || in[i] != '"') {
    return fail("greet wants JSON {\"name\":\"...\"}");
  }
  u64 start = ++i;
  while (i < n && in[i] != '"' && in[i] != '\\') {
    i++;
  }
  if (i >= n || in[i] != '"') {
    return fail("greet wants JSON {\"name\":\"...\"} without escapes");
  }
  if (i == start) {
    return fail("greet wants a name: {\"name\":\"...\"}");
  }
  static const char pre[] = "{\"greeting\":\"hello, ";
  u64 o = 0;
  for (u64 j = 0; pre[j]; j++) {
    out[o++] = (u8)pre[j];
  }
  for (u64 j = start; j < i; j++) {
    out[o++] = in[j];
  }
  out[o++] = '"';
  out[o++] = '}';
  u64 off = store(out, o);
  if (off == 0) {
    return fail("greet: out of memory");
  }
  extism_output_set(off, o);
  return 0;
}
