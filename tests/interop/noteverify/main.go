// Command noteverify checks modelchain's log formats with golang.org/x/mod
// (sumdb/note and sumdb/tlog), an implementation modelchain did not write.
//
// It reads one JSON object on stdin:
//
//	{
//	  "log_key":     "origin+hex8+base64(0x01||key)",  // the log's verifier key
//	  "checkpoint":  "<signed checkpoint note>",
//	  "cosigners":   ["name+hex8+base64(0x04||key)"],  // each must have cosigned it
//	  "inclusion":   [{"index": 3, "entry": "<base64 entry bytes>", "proof": ["<base64>"]}],
//	  "consistency": [{"old_checkpoint": "<signed note>", "proof": ["<base64>"]}],
//	  "tlog_proofs": [{"entry": "<base64 entry bytes>", "text": "<c2sp.org/tlog-proof@v1 text>"}],
//	  "tiles":       {"tile/0/000.p/5": "<base64>", "tile/entries/000.p/5": "<base64>"}
//	}
//
// Every field but log_key and checkpoint may be left out. Proofs are checked
// against the checkpoint; a tlog-proof against the one it carries, which must
// also hold a good cosignature by each cosigner. When tiles are given they must be every hash tile
// and entry bundle (C2SP tlog-tiles paths) of a tree of the checkpoint's
// size: the tree is rebuilt from the entries with tlog.StoredHashes, its root
// must be the checkpoint's, and each hash tile must be byte for byte the one
// tlog.ReadTileData makes; proofs must then also equal the ones x/mod makes.
//
// It prints one line per check passed and exits 0; on the first mismatch it
// prints "noteverify: FAIL: ..." to stderr and exits 1 (2 for unusable input).
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	tileHeight      = 8 // C2SP tlog-tiles fixes the height; x/mod's paths carry it
	cosignatureType = 0x04
	maxTimestamp    = 1<<63 - 1
)

type inclusionProof struct {
	Index int64    `json:"index"`
	Entry string   `json:"entry"`
	Proof []string `json:"proof"`
}

type consistencyProof struct {
	OldCheckpoint string   `json:"old_checkpoint"`
	Proof         []string `json:"proof"`
}

type tlogProof struct {
	Entry string `json:"entry"`
	Text  string `json:"text"`
}

type input struct {
	LogKey      string             `json:"log_key"`
	Checkpoint  string             `json:"checkpoint"`
	Cosigners   []string           `json:"cosigners"`
	Inclusion   []inclusionProof   `json:"inclusion"`
	Consistency []consistencyProof `json:"consistency"`
	TlogProofs  []tlogProof        `json:"tlog_proofs"`
	Tiles       map[string]string  `json:"tiles"`
}

// checkpoint is a C2SP tlog-checkpoint body as x/mod reads it.
type checkpoint struct {
	origin string
	tree   tlog.Tree
}

type failure struct{ msg string }

func fail(format string, args ...any) {
	panic(failure{fmt.Sprintf(format, args...)})
}

func main() {
	var in input
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "noteverify: bad input: %v\n", err)
		os.Exit(2)
	}
	if _, err := dec.Token(); err != io.EOF {
		fmt.Fprintln(os.Stderr, "noteverify: bad input: more than one JSON value")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failure)
			if !ok {
				panic(r)
			}
			fmt.Fprintf(os.Stderr, "noteverify: FAIL: %s\n", f.msg)
			os.Exit(1)
		}
	}()
	run(in)
}

func run(in input) {
	verifier, err := note.NewVerifier(in.LogKey)
	if err != nil {
		fail("log key %q: %v", in.LogKey, err)
	}
	verifiers := note.VerifierList(verifier)
	cp, n := openCheckpoint("checkpoint", in.Checkpoint, verifiers)
	fmt.Printf("checkpoint origin=%s size=%d root=%s\n", cp.origin, cp.tree.N, cp.tree.Hash)

	for _, vkey := range in.Cosigners {
		name, ts := checkCosignature("checkpoint", n, vkey)
		fmt.Printf("cosignature %s time=%d ok\n", name, ts)
	}

	var stored tlog.HashReader
	if in.Tiles != nil {
		stored = checkTiles(cp.tree, in.Tiles)
	}

	for _, p := range in.Inclusion {
		what := fmt.Sprintf("inclusion proof for entry %d in size %d", p.Index, cp.tree.N)
		entry := decodeB64(what+": entry", p.Entry)
		proof := tlog.RecordProof(decodeHashes(what, p.Proof))
		if err := tlog.CheckRecord(proof, cp.tree.N, cp.tree.Hash, p.Index, tlog.RecordHash(entry)); err != nil {
			fail("%s: tlog.CheckRecord: %v", what, err)
		}
		if stored != nil {
			want, err := tlog.ProveRecord(cp.tree.N, p.Index, stored)
			if err != nil {
				fail("%s: tlog.ProveRecord: %v", what, err)
			}
			if !sameHashes(want, proof) {
				fail("%s: verifies but is not the proof x/mod builds", what)
			}
		}
		fmt.Printf("inclusion %d in %d ok\n", p.Index, cp.tree.N)
	}

	for i, p := range in.Consistency {
		old, _ := openCheckpoint(fmt.Sprintf("old checkpoint %d", i), p.OldCheckpoint, verifiers)
		what := fmt.Sprintf("consistency proof %d -> %d", old.tree.N, cp.tree.N)
		if old.origin != cp.origin {
			fail("%s: old checkpoint is for origin %q, not %q", what, old.origin, cp.origin)
		}
		proof := tlog.TreeProof(decodeHashes(what, p.Proof))
		if err := tlog.CheckTree(proof, cp.tree.N, cp.tree.Hash, old.tree.N, old.tree.Hash); err != nil {
			fail("%s: tlog.CheckTree: %v", what, err)
		}
		if stored != nil {
			want, err := tlog.ProveTree(cp.tree.N, old.tree.N, stored)
			if err != nil {
				fail("%s: tlog.ProveTree: %v", what, err)
			}
			if !sameHashes(want, proof) {
				fail("%s: verifies but is not the proof x/mod builds", what)
			}
		}
		fmt.Printf("consistency %d -> %d ok\n", old.tree.N, cp.tree.N)
	}

	for i, p := range in.TlogProofs {
		checkTlogProof(fmt.Sprintf("tlog-proof %d", i), p, verifiers, in.Cosigners)
	}
}

// checkTlogProof reads a C2SP tlog-proof (c2sp.org/tlog-proof) as its spec
// words it and checks it with x/mod: the checkpoint it carries with note.Open,
// the inclusion path with tlog.CheckRecord.
func checkTlogProof(what string, p tlogProof, verifiers note.Verifiers, cosigners []string) {
	head, cpText, ok := strings.Cut(p.Text, "\n\n")
	if !ok {
		fail("%s: no empty line before the checkpoint", what)
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		fail("%s: first line %q is not c2sp.org/tlog-proof@v1", what, lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		decodeB64(what+": extra", strings.TrimPrefix(lines[0], "extra "))
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		fail("%s: no index line", what)
	}
	digits := strings.TrimPrefix(lines[0], "index ")
	index, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != digits {
		fail("%s: index %q is not a decimal without leading zeros", what, digits)
	}
	proof := tlog.RecordProof(decodeHashes(what, lines[1:]))
	cp, n := openCheckpoint(what+": checkpoint", cpText, verifiers)
	for _, vkey := range cosigners {
		checkCosignature(what+": checkpoint", n, vkey)
	}
	entry := decodeB64(what+": entry", p.Entry)
	if err := tlog.CheckRecord(proof, cp.tree.N, cp.tree.Hash, index, tlog.RecordHash(entry)); err != nil {
		fail("%s (entry %d in size %d): tlog.CheckRecord: %v", what, index, cp.tree.N, err)
	}
	fmt.Printf("tlog-proof %d in %d ok\n", index, cp.tree.N)
}

// openCheckpoint verifies the log's signature with note.Open and parses the body.
func openCheckpoint(what, text string, verifiers note.Verifiers) (checkpoint, *note.Note) {
	n, err := note.Open([]byte(text), verifiers)
	if err != nil {
		fail("%s: note.Open: %v", what, err)
	}
	origin, rest, ok := strings.Cut(n.Text, "\n")
	if !ok || origin == "" {
		fail("%s: no origin line", what)
	}
	// A C2SP checkpoint is sumdb's tree note with the origin in place of the
	// fixed first line, so x/mod's own parser reads the size and root.
	tree, err := tlog.ParseTree([]byte("go.sum database tree\n" + rest))
	if err != nil {
		fail("%s: tlog.ParseTree: %v", what, err)
	}
	// ParseTree lets stray low bits through; C2SP wants the one canonical spelling.
	lines := strings.SplitN(rest, "\n", 3)
	if lines[1] != base64.StdEncoding.EncodeToString(tree.Hash[:]) {
		fail("%s: root hash line %q is not canonical base64", what, lines[1])
	}
	if origin != n.Sigs[0].Name {
		fail("%s: origin %q is not the name of the log key %q", what, origin, n.Sigs[0].Name)
	}
	return checkpoint{origin: origin, tree: tree}, n
}

// checkCosignature verifies the tlog-cosignature/v1 line of the cosigner
// vkey in n with crypto/ed25519; x/mod does not know key type 0x04.
func checkCosignature(what string, n *note.Note, vkey string) (string, uint64) {
	name, idHex, keyB64, err := splitVerifierKey(vkey)
	if err != nil {
		fail("cosigner key %q: %v", vkey, err)
	}
	raw := decodeB64("cosigner key "+name, keyB64)
	if len(raw) != 1+ed25519.PublicKeySize || raw[0] != cosignatureType {
		fail("cosigner key %q: not a type 0x04 Ed25519 cosignature key", vkey)
	}
	id := sha256.Sum256(append([]byte(name+"\n"), raw...))
	if hex := fmt.Sprintf("%08x", binary.BigEndian.Uint32(id[:4])); hex != idHex {
		fail("cosigner key %q: key id %s does not match the key (want %s)", vkey, idHex, hex)
	}
	keyID := binary.BigEndian.Uint32(id[:4])
	var found []note.Signature
	for _, s := range n.UnverifiedSigs {
		if s.Name == name && s.Hash == keyID {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		fail("%s: cosigner %s+%s: %d cosignature lines, want 1", what, name, idHex, len(found))
	}
	sig := decodeB64("cosignature by "+name, found[0].Base64)[4:]
	if len(sig) != 8+ed25519.SignatureSize {
		fail("%s: cosignature by %s: %d bytes after the key id, want %d", what, name, len(sig), 8+ed25519.SignatureSize)
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	if ts > maxTimestamp {
		fail("%s: cosignature by %s: timestamp %d is past 2^63-1", what, name, ts)
	}
	msg := "cosignature/v1\ntime " + strconv.FormatUint(ts, 10) + "\n" + n.Text
	if !ed25519.Verify(raw[1:], []byte(msg), sig[8:]) {
		fail("%s: cosignature by %s (time %d) does not verify", what, name, ts)
	}
	return name, ts
}

func splitVerifierKey(vkey string) (name, idHex, keyB64 string, err error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || parts[0] == "" || len(parts[1]) != 8 {
		return "", "", "", fmt.Errorf("not name+hex8+base64")
	}
	return parts[0], parts[1], parts[2], nil
}

// checkTiles rebuilds the tree from the entry bundles, checks its root and
// every hash tile, and returns a reader of the rebuilt stored hashes.
func checkTiles(tree tlog.Tree, tiles map[string]string) tlog.HashReader {
	hashTiles := map[tlog.Tile][]byte{}
	bundles := map[int64][]byte{}
	bundleWidth := map[int64]int{}
	for path, b64 := range tiles {
		data := decodeB64(path, b64)
		if !strings.HasPrefix(path, "tile/") {
			fail("%q is not a tlog-tiles path", path)
		}
		rest := strings.TrimPrefix(path, "tile/")
		// x/mod's tile paths carry the height; its data tiles are level -1.
		gopath := fmt.Sprintf("tile/%d/%s", tileHeight, rest)
		isBundle := strings.HasPrefix(rest, "entries/")
		if isBundle {
			gopath = fmt.Sprintf("tile/%d/data/%s", tileHeight, strings.TrimPrefix(rest, "entries/"))
		}
		t, err := tlog.ParseTilePath(gopath)
		if err != nil {
			fail("%q (as %q): tlog.ParseTilePath: %v", path, gopath, err)
		}
		if isBundle {
			bundles[t.N] = data
			bundleWidth[t.N] = t.W
		} else {
			hashTiles[t] = data
		}
	}

	entries := readBundles(tree.N, bundles, bundleWidth)
	hashes := make([]tlog.Hash, 0, tlog.StoredHashCount(tree.N))
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(hashes)) {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, e := range entries {
		hs, err := tlog.StoredHashes(int64(i), e, reader)
		if err != nil {
			fail("tlog.StoredHashes(%d): %v", i, err)
		}
		hashes = append(hashes, hs...)
	}
	root, err := tlog.TreeHash(tree.N, reader)
	if err != nil {
		fail("tlog.TreeHash: %v", err)
	}
	if root != tree.Hash {
		fail("root of the %d entries in the bundles is %s, the checkpoint says %s", tree.N, root, tree.Hash)
	}

	// The tiles a tree of this size has: NewTiles lists every width of a
	// partial tile; the one served is the widest.
	want := map[[2]int64]tlog.Tile{}
	for _, t := range tlog.NewTiles(tileHeight, 0, tree.N) {
		key := [2]int64{int64(t.L), t.N}
		if t.W > want[key].W {
			want[key] = t
		}
	}
	keys := make([][2]int64, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		t := want[k]
		got, ok := hashTiles[t]
		if !ok {
			fail("hash tile %s is missing", c2spPath(t))
		}
		delete(hashTiles, t)
		data, err := tlog.ReadTileData(t, reader)
		if err != nil {
			fail("tlog.ReadTileData(%s): %v", t.Path(), err)
		}
		if !bytes.Equal(got, data) {
			fail("hash tile %s differs from the one x/mod builds from the entries", c2spPath(t))
		}
		// Every node a tile covers, read through x/mod's HashFromTile.
		for h := 0; h < tileHeight; h++ {
			level := t.L*tileHeight + h
			first := t.N << tileHeight >> h
			for i := int64(0); i < int64(t.W)>>h; i++ {
				x := tlog.StoredHashIndex(level, first+i)
				fromTile, err := tlog.HashFromTile(t, got, x)
				if err != nil {
					fail("tlog.HashFromTile(%s, %d): %v", c2spPath(t), x, err)
				}
				if fromTile != hashes[x] {
					fail("node (%d, %d) read from %s is wrong", level, first+i, c2spPath(t))
				}
			}
		}
	}
	for t := range hashTiles {
		fail("hash tile %s is not one of a tree of size %d", c2spPath(t), tree.N)
	}

	// x/mod's own client path: TileHashReader authenticates the served tiles
	// against the tree hash before it returns any hash.
	served := tileReader{tiles: tiles}
	leaves := make([]int64, tree.N)
	for i := range leaves {
		leaves[i] = tlog.StoredHashIndex(0, int64(i))
	}
	got, err := tlog.TileHashReader(tree, served).ReadHashes(leaves)
	if err != nil {
		fail("tlog.TileHashReader over the served tiles: %v", err)
	}
	for i, x := range leaves {
		if got[i] != hashes[x] {
			fail("leaf %d read through tlog.TileHashReader is wrong", i)
		}
	}
	fmt.Printf("tiles %d hash tiles, %d entry bundles, %d entries ok\n", len(keys), len(bundles), len(entries))
	return reader
}

// readBundles decodes C2SP entry bundles (uint16 length, then the entry) and
// checks that they hold exactly entries 0..size-1.
func readBundles(size int64, bundles map[int64][]byte, widths map[int64]int) [][]byte {
	full, last := size/(1<<tileHeight), int(size%(1<<tileHeight))
	count := full
	if last > 0 {
		count++
	}
	if int64(len(bundles)) != count {
		fail("%d entry bundles for size %d, want %d", len(bundles), size, count)
	}
	entries := make([][]byte, 0, size)
	for n := int64(0); n < count; n++ {
		data, ok := bundles[n]
		if !ok {
			fail("entry bundle %d is missing", n)
		}
		want := 1 << tileHeight
		if n == full {
			want = last
		}
		if widths[n] != want {
			fail("entry bundle %d has width %d in its path, want %d", n, widths[n], want)
		}
		var got int
		for len(data) > 0 {
			if len(data) < 2 {
				fail("entry bundle %d ends inside a length prefix", n)
			}
			l := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+l {
				fail("entry bundle %d ends inside an entry", n)
			}
			entries = append(entries, data[2:2+l])
			data = data[2+l:]
			got++
		}
		if got != want {
			fail("entry bundle %d holds %d entries, its path says %d", n, got, want)
		}
	}
	return entries
}

// tileReader serves the C2SP-named hash tiles to x/mod under its own names.
type tileReader struct{ tiles map[string]string }

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b64, ok := r.tiles[c2spPath(t)]
		if !ok {
			return nil, fmt.Errorf("no tile %s", c2spPath(t))
		}
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// c2spPath is x/mod's tile path without the height element.
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
}

func decodeB64(what, s string) []byte {
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		fail("%s: bad base64: %v", what, err)
	}
	return data
}

func decodeHashes(what string, proof []string) []tlog.Hash {
	out := make([]tlog.Hash, len(proof))
	for i, s := range proof {
		h, err := tlog.ParseHash(s)
		if err != nil {
			fail("%s: hash %d: %v", what, i, err)
		}
		out[i] = h
	}
	return out
}

func sameHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
