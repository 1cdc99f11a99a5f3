package chaos

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestAVolumeMadeBeforeARestoreOfItsRoundIsForgotten(t *testing.T) {
	t0 := time.Now()
	h := &History{}
	h.Add(&Op{OpPlan: OpPlan{Kind: OpCreate, Volume: "k0-r2-2"}, ID: "o7", Round: 2, Start: t0.Add(4 * time.Second)})
	h.Add(&Op{OpPlan: OpPlan{Kind: OpCopy, Volume: "k0-v1"}, ID: "o8", Round: 2, Start: t0.Add(time.Second)})
	h.Add(&Op{OpPlan: OpPlan{Kind: OpCreate, Volume: "k0-r2-3"}, ID: "o9", Round: 2, Start: t0.Add(6 * time.Second)})
	h.Add(&Op{OpPlan: OpPlan{Kind: OpCreate, Volume: "k0-r3-1"}, ID: "o10", Round: 3, Start: t0.Add(time.Second)})
	h.AddFault(&Fault{FaultPlan: FaultPlan{Kind: FaultRestore}, Round: 2, Start: t0, Healed: t0.Add(5 * time.Second)})

	assert.True(t, h.ForgottenByRollback("k0-r2-2"), "created before the restore")
	assert.True(t, h.ForgottenByRollback("k0-v1-copy-o8"), "copied before the restore")
	assert.False(t, h.ForgottenByRollback("k0-r2-3"), "created after the restore")
	assert.False(t, h.ForgottenByRollback("k0-r3-1"), "another round")
	assert.False(t, h.ForgottenByRollback("k0-v1"))
}
