package engine

import (
	"encoding/json"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/singer"
)

func TestReadsWholeTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		key    string
		bm     *singer.Bookmark
		whole  bool
	}{
		{"no bookmark", MethodLogBased, "", nil, true},
		{"full table always", MethodFullTable, "", &singer.Bookmark{LastReplicationMethod: MethodFullTable, Version: 1}, true},
		{"log-based streaming", MethodLogBased, "", &singer.Bookmark{LastReplicationMethod: MethodLogBased, Version: 1, LSN: 100}, false},
		{"log-based lsn without a version: the copy never finished", MethodLogBased, "", &singer.Bookmark{LastReplicationMethod: MethodLogBased, LSN: 100}, true},
		{"log-based copy in progress", MethodLogBased, "", &singer.Bookmark{LastReplicationMethod: MethodLogBased, Version: 1, LSN: 100, CopyInProgress: true}, true},
		{"log-based copy resuming after a key", MethodLogBased, "", &singer.Bookmark{LastReplicationMethod: MethodLogBased, Version: 1, LSN: 100, LastPKFetched: map[string]string{"id": "5"}}, true},
		{"incremental with a key value", MethodIncremental, "updated_at", &singer.Bookmark{LastReplicationMethod: MethodIncremental, Version: 1, ReplicationKey: "updated_at", ReplicationKeyValue: json.RawMessage(`"2024-01-01"`)}, false},
		{"incremental without a key value", MethodIncremental, "updated_at", &singer.Bookmark{LastReplicationMethod: MethodIncremental, Version: 1, ReplicationKey: "updated_at"}, true},
		{"incremental key changed", MethodIncremental, "id", &singer.Bookmark{LastReplicationMethod: MethodIncremental, Version: 1, ReplicationKey: "updated_at", ReplicationKeyValue: json.RawMessage(`"2024-01-01"`)}, true},
		{"method changed", MethodLogBased, "", &singer.Bookmark{LastReplicationMethod: MethodIncremental, Version: 1, LSN: 100}, true},
	} {
		if got := ReadsWholeTable(tc.method, tc.key, tc.bm); got != tc.whole {
			t.Errorf("%s: ReadsWholeTable = %v, want %v", tc.name, got, tc.whole)
		}
	}
}
