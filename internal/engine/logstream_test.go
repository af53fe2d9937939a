package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/logging"
	"github.com/tap-postgres/tap-postgres/internal/logical"
	"github.com/tap-postgres/tap-postgres/internal/singer"
	"github.com/tap-postgres/tap-postgres/internal/types"
)

// fakeSource replays events; once they are spent it reports nothing, as an
// idle server does.
type fakeSource struct{ events []logical.Event }

func (f *fakeSource) Next(context.Context, time.Duration) (*logical.Event, error) {
	if len(f.events) == 0 {
		return nil, nil
	}
	ev := f.events[0]
	f.events = f.events[1:]
	return &ev, nil
}

func (f *fakeSource) Close(context.Context) error { return nil }

var fakeCommit = time.Date(2026, 11, 30, 8, 0, 0, 250000000, time.UTC)

func begin(lsn logical.LSN) logical.Event {
	return logical.Event{Op: logical.OpBegin, LSN: lsn, CommitTime: fakeCommit}
}

func commit(lsn logical.LSN) logical.Event {
	return logical.Event{Op: logical.OpCommit, LSN: lsn, CommitTime: fakeCommit}
}

func keepalive(lsn logical.LSN) logical.Event {
	return logical.Event{Op: logical.OpKeepalive, LSN: lsn}
}

// cols builds text-form columns from name, value pairs; "NULL" is SQL NULL.
func cols(pairs ...string) []logical.Column {
	var out []logical.Column
	for i := 0; i+1 < len(pairs); i += 2 {
		c := logical.Column{Name: pairs[i], Value: []byte(pairs[i+1])}
		if pairs[i+1] == "NULL" {
			c.Value, c.Null = nil, true
		}
		out = append(out, c)
	}
	return out
}

func row(op logical.Op, lsn logical.LSN, table string, newRow, oldRow []logical.Column) logical.Event {
	return logical.Event{Op: op, LSN: lsn, CommitTime: fakeCommit, Schema: "public", Table: table, New: newRow, Old: oldRow}
}

// itemsPlan is public.items (id integer key, name text, price numeric(12,2)).
func itemsPlan(t *testing.T) *streamPlan {
	t.Helper()
	resolve := func(oid uint32, typmod int32) *types.Type {
		builtin := map[uint32]types.CatalogType{
			23:   {OID: 23, Name: "int4", Type: 'b', Category: 'N', Delim: ','},
			25:   {OID: 25, Name: "text", Type: 'b', Category: 'S', Delim: ','},
			1700: {OID: 1700, Name: "numeric", Type: 'b', Category: 'N', Delim: ','},
		}
		lookup := func(oid uint32) (types.CatalogType, bool) { ct, ok := builtin[oid]; return ct, ok }
		typ, err := types.Resolve(oid, typmod, lookup, types.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return typ
	}
	columns := []*discovery.Column{
		{Name: "id", Num: 1, NotNull: true, SQLType: "integer", TypeOID: 23, TypeMod: -1, Type: resolve(23, -1)},
		{Name: "name", Num: 2, SQLType: "text", TypeOID: 25, TypeMod: -1, Type: resolve(25, -1)},
		{Name: "price", Num: 3, SQLType: "numeric(12,2)", TypeOID: 1700, TypeMod: 12<<16 | 2 + 4, Type: resolve(1700, 12<<16|2+4)},
	}
	live := &discovery.Table{Database: "shop", Schema: "public", Name: "items", Kind: discovery.KindTable, Columns: columns, PrimaryKey: []string{"id"}}
	return &streamPlan{id: "shop-public-items", database: "shop", schema: "public", table: "items", name: "items",
		method: MethodLogBased, live: live, columns: columns, keyProperties: []string{"id"}}
}

// TestConsume runs the engine's LOG_BASED logic against a fake change
// stream: what it emits, the bookmarks it keeps, and when it stops.
func TestConsume(t *testing.T) {
	const start, end = 0x1000, 0x5000
	for _, tc := range []struct {
		name   string
		events []logical.Event
		// records are the RECORD messages' record objects, in order.
		records []string
		// activate counts ACTIVATE_VERSION messages.
		activate int
		lsn      uint64
		// changes are what the loading report shows.
		changes ChangeCounts
	}{
		{
			name: "insert, update, delete in one transaction",
			events: []logical.Event{begin(0x2000),
				row(logical.OpInsert, 0x2010, "items", cols("id", "1", "name", "pen", "price", "1.50"), nil),
				row(logical.OpUpdate, 0x2020, "items", cols("id", "1", "name", "pen", "price", "99999999.99"), cols("id", "1")),
				row(logical.OpDelete, 0x2030, "items", nil, cols("id", "1")),
				commit(0x2100), keepalive(end)},
			records: []string{`{"id":1,"name":"pen","price":1.50,"_sdc_deleted_at":null}`,
				`{"id":1,"name":"pen","price":99999999.99,"_sdc_deleted_at":null}`,
				`{"id":1,"_sdc_deleted_at":"2026-11-30T08:00:00.250000+00:00"}`},
			lsn:     end,
			changes: ChangeCounts{Inserts: 1, Updates: 1, Deletes: 1},
		},
		{
			name: "a key change is a delete of the old key, then the new row",
			events: []logical.Event{begin(0x2000),
				row(logical.OpUpdate, 0x2010, "items", cols("id", "2", "name", "cup", "price", "NULL"), cols("id", "1")),
				commit(0x2100), keepalive(end)},
			records: []string{`{"id":1,"_sdc_deleted_at":"2026-11-30T08:00:00.250000+00:00"}`,
				`{"id":2,"name":"cup","price":null,"_sdc_deleted_at":null}`},
			lsn:     end,
			changes: ChangeCounts{Updates: 1},
		},
		{
			name: "unchanged TOAST value taken from the old row (REPLICA IDENTITY FULL)",
			events: []logical.Event{begin(0x2000),
				row(logical.OpUpdate, 0x2010, "items", cols("id", "3", "price", "2.00"), cols("id", "3", "name", "long text", "price", "1.00")),
				commit(0x2100), keepalive(end)},
			records: []string{`{"id":3,"name":"long text","price":2.00,"_sdc_deleted_at":null}`},
			lsn:     end,
			changes: ChangeCounts{Updates: 1},
		},
		{
			name: "TRUNCATE is a new version; other tables are passed over",
			events: []logical.Event{begin(0x2000),
				row(logical.OpInsert, 0x2010, "elsewhere", cols("x", "1"), nil),
				{Op: logical.OpTruncate, LSN: 0x2020, Schema: "public", Table: "items"},
				commit(0x2100), keepalive(end)},
			activate: 1,
			lsn:      end,
		},
		{
			name: "a transaction under way at the end is read to its commit; a change written before the bookmark is not skipped",
			events: []logical.Event{begin(0x4f00),
				row(logical.OpInsert, 0x0800, "items", cols("id", "4", "name", "early", "price", "0.10"), nil),
				keepalive(end),
				row(logical.OpInsert, 0x5050, "items", cols("id", "5", "name", "late", "price", "0.20"), nil),
				commit(0x5080)},
			records: []string{`{"id":4,"name":"early","price":0.10,"_sdc_deleted_at":null}`,
				`{"id":5,"name":"late","price":0.20,"_sdc_deleted_at":null}`},
			lsn:     0x5080,
			changes: ChangeCounts{Inserts: 2},
		},
		{
			name:   "an idle database moves to the server's position",
			events: []logical.Event{keepalive(end)},
			lsn:    end,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := config.Parse([]byte(`{"host":"h","user":"u","dbname":"shop","logical_poll_total_seconds":2}`))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
			clock := func() time.Time { now = now.Add(10 * time.Millisecond); return now }
			e := New(cfg, logging.New(io.Discard, slog.LevelInfo), clock)
			state := singer.NewState()
			bm := state.Bookmark("shop-public-items")
			bm.LastReplicationMethod, bm.Version, bm.LSN = MethodLogBased, 1700000000000, start
			var out bytes.Buffer
			w := singer.NewWriter(&out)
			p := itemsPlan(t)
			r := e.newLogRun(&logDatabase{name: "shop", plans: []*streamPlan{p}}, &singer.Catalog{}, state, w, nil)
			ls, err := r.newLogStream(p)
			if err != nil {
				t.Fatal(err)
			}
			r.streams[[2]string{"public", "items"}] = ls
			if err := r.consume(t.Context(), &fakeSource{events: tc.events}, end, now); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			var records []string
			activate := 0
			var last map[string]any
			for line := range strings.Lines(out.String()) {
				var m map[string]json.RawMessage
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				switch string(m["type"]) {
				case `"RECORD"`:
					records = append(records, string(m["record"]))
				case `"ACTIVATE_VERSION"`:
					activate++
				case `"STATE"`:
					if err := json.Unmarshal(m["value"], &last); err != nil {
						t.Fatal(err)
					}
				}
			}
			if strings.Join(records, "\n") != strings.Join(tc.records, "\n") {
				t.Errorf("records:\n%s\nwant:\n%s", strings.Join(records, "\n"), strings.Join(tc.records, "\n"))
			}
			if activate != tc.activate {
				t.Errorf("%d ACTIVATE_VERSION, want %d", activate, tc.activate)
			}
			if got := state.Bookmark("shop-public-items").LSN; got != tc.lsn {
				t.Errorf("bookmark lsn %#x, want %#x", got, tc.lsn)
			}
			if last == nil {
				t.Error("no final STATE")
			}
			e.keepChanges(r.streams)
			if got := e.Changes()[p.name]; got != tc.changes {
				t.Errorf("changes %+v, want %+v", got, tc.changes)
			}
		})
	}
}
