/** The shape `litebase gen types --lang ts` writes, which makes the client typed. */

/** One collection: its record as read, the body to create one, the body to change one, and its
 * relations (field → the collection it points at) for `expand`. */
export interface CollectionTypes {
  Row: Record<string, unknown>;
  Insert: Record<string, unknown>;
  Update: Record<string, unknown>;
  Relations: Record<string, string>;
}

export interface GenericDatabase {
  collections: Record<string, CollectionTypes>;
}

/** The default when no generated `Database` is given: any collection, any field. */
export interface AnyDatabase {
  collections: Record<
    string,
    {
      Row: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      Insert: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      Update: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      Relations: Record<string, string>;
    }
  >;
}

export type CollectionName<DB extends GenericDatabase> = keyof DB["collections"] & string;
export type Tables<DB extends GenericDatabase> = DB["collections"];
export type RowOf<DB extends GenericDatabase, C extends CollectionName<DB>> = Tables<DB>[C]["Row"];
export type InsertOf<DB extends GenericDatabase, C extends CollectionName<DB>> = Tables<DB>[C]["Insert"];
export type UpdateOf<DB extends GenericDatabase, C extends CollectionName<DB>> = Tables<DB>[C]["Update"];
export type RelationsOf<DB extends GenericDatabase, C extends CollectionName<DB>> = Tables<DB>[C]["Relations"];
export type RelationName<DB extends GenericDatabase, C extends CollectionName<DB>> = keyof RelationsOf<DB, C> & string;

/** A record with the relations asked for inline under `expand` (null where you may not see it). */
export type Expanded<DB extends GenericDatabase, C extends CollectionName<DB>, E extends string> = RowOf<DB, C> &
  ([E] extends [never]
    ? unknown
    : {
        expand: {
          [K in E]: RelationsOf<DB, C>[K] extends CollectionName<DB> ? RowOf<DB, RelationsOf<DB, C>[K]> | null : unknown;
        };
      });
