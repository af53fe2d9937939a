package engine

import (
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/logical"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// TestSlotLag: the lag runs from the smallest lsn bookmark of the
// database's streams (other streams' bookmarks aside), from the slot's
// confirmed position when none has one, and is never negative.
func TestSlotLag(t *testing.T) {
	state := singer.NewState()
	state.Bookmark("db-public-a").LSN = 5000
	state.Bookmark("db-public-b").LSN = 3000
	state.Bookmark("db-public-copying") // no lsn yet
	state.Bookmark("other-public-c").LSN = 100
	slot := logical.Slot{ConfirmedFlush: 2000, WALEnd: 9000}
	for _, c := range []struct {
		name    string
		streams []string
		state   *singer.State
		end     logical.LSN
		want    int64
	}{
		{"smallest bookmark", []string{"db-public-a", "db-public-b", "db-public-copying"}, state, 9000, 6000},
		{"no bookmark yet", []string{"db-public-copying", "db-public-new"}, state, 9000, 7000},
		{"no state", []string{"db-public-a"}, nil, 9000, 7000},
		{"end behind the bookmark", []string{"db-public-a"}, state, 4000, 0},
	} {
		slot.WALEnd = c.end
		if got := slotLag(slot, c.streams, c.state); got != c.want {
			t.Errorf("%s: lag %d, want %d", c.name, got, c.want)
		}
	}
	if _, ok := state.Bookmarks["db-public-new"]; ok {
		t.Error("measuring the lag added a bookmark to the state")
	}
}
