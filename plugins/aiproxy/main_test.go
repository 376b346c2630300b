package aiproxy

import (
	"testing"

	"go.uber.org/goleak"
)

// Every relay test must leave no goroutine behind: no stuck stream copier,
// no upstream call left running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
