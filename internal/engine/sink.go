package engine

import (
	"slices"
	"sync"

	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// sink is where streams emit: the writer and the state its STATE messages
// carry, shared by streams copied at once. A stream sends its records in
// batches together with the bookmark change that covers them and a STATE,
// all under one lock, so that no STATE ever claims more than went out and
// each stream's messages stay in order.
type sink struct {
	mu     sync.Mutex
	out    *singer.Writer
	state  *singer.State
	states *stateCadence
	// inProgress are the copies running now; currently_syncing names the
	// first of them by tap_stream_id.
	inProgress []string
}

func newSink(out *singer.Writer, state *singer.State, states *stateCadence) *sink {
	return &sink{out: out, state: state, states: states}
}

// do runs f with the writer and state to itself.
func (s *sink) do(f func(out *singer.Writer, st *singer.State) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f(s.out, s.state)
}

// emit writes a batch of complete RECORD lines, applies the bookmark change
// they justify, and writes the STATE when one is due.
func (s *sink) emit(batch []byte, update func(st *singer.State)) error {
	return s.emitState(batch, update, s.states.write)
}

// emitLast is emit with the STATE written whatever the cadence: the last
// a stream can write before it stops (a signal, a row it cannot read), so
// that the next run resumes right after what went out.
func (s *sink) emitLast(batch []byte, update func(st *singer.State)) error {
	return s.emitState(batch, update, s.states.force)
}

func (s *sink) emitState(batch []byte, update func(st *singer.State), write func(*singer.Writer, *singer.State) error) error {
	return s.do(func(out *singer.Writer, st *singer.State) error {
		if len(batch) > 0 {
			if err := out.WriteRecordLine(batch); err != nil {
				return err
			}
		}
		if update != nil {
			update(st)
		}
		return write(out, st)
	})
}

// started and finished keep currently_syncing; call them inside do.
func (s *sink) started(id string) {
	s.inProgress = append(s.inProgress, id)
	s.syncing()
}

func (s *sink) finished(id string) {
	s.inProgress = slices.DeleteFunc(s.inProgress, func(x string) bool { return x == id })
	s.syncing()
}

func (s *sink) syncing() {
	if len(s.inProgress) == 0 {
		s.state.CurrentlySyncing = nil
		return
	}
	first := slices.Min(s.inProgress)
	s.state.CurrentlySyncing = &first
}
