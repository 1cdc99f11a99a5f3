package backends_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
	"github.com/drayage/drayage/cluster/consulstore"
	"github.com/drayage/drayage/cluster/storetest"
)

func TestParseAcceptsTheThreeKindsAndExplainsMistakes(t *testing.T) {
	for raw, want := range map[string]backends.Spec{
		"":                                {Kind: backends.KindEmbedded},
		"embedded":                        {Kind: backends.KindEmbedded},
		"etcd://10.0.0.1:2379":            {Kind: backends.KindEtcd, Endpoints: []string{"10.0.0.1:2379"}},
		"etcd://a:2379,b:2379,[::1]:2379": {Kind: backends.KindEtcd, Endpoints: []string{"a:2379", "b:2379", "[::1]:2379"}},
		"consul://127.0.0.1:8500/":        {Kind: backends.KindConsul, Endpoints: []string{"127.0.0.1:8500"}},
	} {
		got, err := backends.Parse(raw)
		require.NoError(t, err, raw)
		assert.Equal(t, want, got, raw)
	}
	for raw, why := range map[string]string{
		"etcd":                      "no scheme",
		"zookeeper://h:2181":        `unknown kind "zookeeper"`,
		"etcd://h":                  `"h" is not HOST:PORT`,
		"etcd://h:2379,":            `"" is not HOST:PORT`,
		"etcd://user:pw@h:2379":     "credentials and TLS files have settings of their own",
		"consul://a:8500,b:8500":    "give one Consul address",
		"consul://h:8500/v1/kv?x=1": "only host:port",
	} {
		_, err := backends.Parse(raw)
		require.Error(t, err, raw)
		assert.Contains(t, err.Error(), why, raw)
		assert.Contains(t, err.Error(), "use embedded, etcd://", raw)
	}
}

func TestMistakesNeverRepeatTheSecretsAStoreURLCarries(t *testing.T) {
	for raw, shown := range map[string]string{
		"etcd://drayage:s3cret@10.0.0.9:2379":    `"etcd://xxxxx@10.0.0.9:2379"`,
		"consul://tok3n@127.0.0.1:8500":          `"consul://xxxxx@127.0.0.1:8500"`,
		"consul://127.0.0.1:8500/?token=tok3n":   `"consul://127.0.0.1:8500/?xxxxx"`,
		"etcd://u:s3cret@a:2379,u:s3cret@b:2379": `"etcd://xxxxx@b:2379"`,
		"drayage:s3cret@10.0.0.9:2379":           `"xxxxx@10.0.0.9:2379"`,
		"etcd://h:2379#tok3n":                    `"etcd://h:2379#xxxxx"`,
	} {
		_, err := backends.Parse(raw)
		require.Error(t, err, raw)
		assert.Contains(t, err.Error(), shown, raw)
		assert.NotContains(t, err.Error(), "s3cret", raw)
		assert.NotContains(t, err.Error(), "tok3n", raw)
	}
	assert.Equal(t, "etcd://a:2379,b:2379", backends.Redact("etcd://a:2379,b:2379"), "nothing to hide")
}

func roundTrip(t *testing.T, s cluster.Store) {
	t.Helper()
	ctx := context.Background()
	_, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put("drayage/check", []byte("ok"))})
	require.NoError(t, err)
	kv, err := s.Get(ctx, "drayage/check")
	require.NoError(t, err)
	assert.Equal(t, "ok", string(kv.Value))
}

func TestEtcdWithMutualTLSAndPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	files := storetest.NewTLSFiles(t)
	srv := storetest.StartEtcd(t, storetest.ServerOptions{TLS: &files})

	// Turn on etcd authentication with a root user.
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Addr}, TLS: files.ClientConfig(t), DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer admin.Close()
	_, err = admin.UserAdd(ctx, "root", "s3cret")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	// And a user limited to drayage's prefix, as README.md documents.
	_, err = admin.RoleAdd(ctx, "drayage")
	require.NoError(t, err)
	_, err = admin.RoleGrantPermission(ctx, "drayage", "drayage/", clientv3.GetPrefixRangeEnd("drayage/"),
		clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	_, err = admin.UserAdd(ctx, "drayage", "pw2")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "drayage", "drayage")
	require.NoError(t, err)
	_, err = admin.AuthEnable(ctx)
	require.NoError(t, err)

	cfg := backends.Config{URL: srv.URL, CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey,
		Username: "root", Password: "s3cret"}
	s, err := backends.Open(ctx, cfg)
	require.NoError(t, err)
	defer s.Close()
	roundTrip(t, s)

	limited := cfg
	limited.Username, limited.Password = "drayage", "pw2"
	ls, err := backends.Open(ctx, limited)
	require.NoError(t, err)
	defer ls.Close()
	roundTrip(t, ls)
	l, err := ls.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	_, err = ls.Txn(ctx, []cluster.Cond{cluster.Absent("drayage/claims/x")}, []cluster.Op{cluster.PutLeased("drayage/claims/x", []byte("c"), l)})
	require.NoError(t, err)
	require.NoError(t, l.Close(ctx))
	_, err = ls.Txn(ctx, nil, []cluster.Op{cluster.Put("elsewhere/x", []byte("no"))})
	require.Error(t, err, "and nothing outside the prefix")

	bad := cfg
	bad.Password = "wrong"
	_, err = backends.Open(ctx, bad)
	require.Error(t, err, "a wrong password is refused at start")
	assert.Contains(t, err.Error(), srv.Addr)

	noCert := cfg
	noCert.CertFile, noCert.KeyFile = "", ""
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShort()
	_, err = backends.Open(short, noCert)
	require.Error(t, err, "no client certificate, no connection")

	half := cfg
	half.KeyFile = ""
	_, err = backends.Open(ctx, half)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "give both the certificate and the key file")
}

func TestConsulWithTLSAndACLToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	files := storetest.NewTLSFiles(t)
	const token = "9b0d8d35-6a07-4c29-a8a3-0d4de2a1c2aa"
	srv := storetest.StartConsul(t, storetest.ServerOptions{TLS: &files, ACLToken: token})

	cfg := backends.Config{URL: srv.URL, CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey, Token: token}
	s, err := backends.Open(ctx, cfg)
	require.NoError(t, err)
	defer s.Close()
	roundTrip(t, s)
	lease, err := s.Grant(ctx, 10*time.Second)
	require.NoError(t, err, "sessions work with the token")
	require.NoError(t, lease.Close(ctx))

	// A token with exactly the policy README.md documents is enough for everything
	// drayage does: sessions, leased keys, transactions under the prefix.
	admin := s.(*consulstore.Store).Client()
	policy, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "drayage",
		Rules: `key_prefix "drayage/" { policy = "write" }` + "\n" + `session_prefix "" { policy = "write" }`}, nil)
	require.NoError(t, err)
	scoped, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
	require.NoError(t, err)
	limited := cfg
	limited.Token = scoped.SecretID
	ls, err := backends.Open(ctx, limited)
	require.NoError(t, err)
	defer ls.Close()
	l, err := ls.Grant(ctx, 10*time.Second)
	require.NoError(t, err)
	_, err = ls.Txn(ctx, []cluster.Cond{cluster.Absent("drayage/claims/x")}, []cluster.Op{cluster.PutLeased("drayage/claims/x", []byte("c"), l)})
	require.NoError(t, err)
	require.NoError(t, l.Close(ctx))
	_, err = ls.Txn(ctx, nil, []cluster.Op{cluster.Put("elsewhere/x", []byte("no"))})
	require.Error(t, err, "and nothing outside the prefix")

	noToken := cfg
	noToken.Token = ""
	_, err = backends.Open(ctx, noToken)
	require.Error(t, err, "ACLs deny a client without a token")
	assert.Contains(t, err.Error(), "Permission denied")

	creds := cfg
	creds.Username = "root"
	_, err = backends.Open(ctx, creds)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Consul takes an ACL token")
}

func TestEmbeddedRefusesRemoteStoreSettings(t *testing.T) {
	_, err := backends.Open(context.Background(), backends.Config{URL: "embedded", Token: "x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not the embedded one")
}
