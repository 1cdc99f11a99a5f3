package daemon

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/progress"
)

// A running backup's progress is what 'drayage volume backup' draws its bar from: the
// bytes read of the total, until it ends; a second backup of the volume meanwhile is
// refused, naming the node and the location.
func TestABackupsProgressIsKeptUntilItEnds(t *testing.T) {
	var b backupsRunning
	update, done, err := b.start("db", "node-a", "s3://backups/db/")
	require.NoError(t, err)
	update(3<<20, 12<<20)
	p := b.get("db")
	require.NotNil(t, p)
	assert.Equal(t, progress.KindBackup, p.Kind)
	assert.Equal(t, "s3://backups/db/", p.To)
	assert.Equal(t, 25, p.Percent())
	assert.Nil(t, b.get("web"), "no backup of web runs")

	_, _, err = b.start("db", "node-a", "s3://backups/other/")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `volume "db" is being backed up on node "node-a" to s3://backups/db/ already`)

	done()
	assert.Nil(t, b.get("db"))
	_, done, err = b.start("db", "node-a", "s3://backups/db/")
	require.NoError(t, err, "once ended, the volume can be backed up again")
	done()
}
