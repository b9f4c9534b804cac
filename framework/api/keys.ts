/**
 * Keys of keyed streams. A key is a string, a finite number, a boolean, or a JSON-shaped array or
 * object of those. Its identity in state is its *key id*: the string itself for string keys, and
 * `\u0000` + canonical JSON for the others, so `42` and `'42'` are different keys, the id is
 * reversible, and string keys hash like Kafka's default partitioner hashes string record keys.
 */
export type Key = string | number | boolean | null | readonly Key[] | { readonly [field: string]: Key };

/** The canonical, reversible id of a key. */
export type KeyId = string;
