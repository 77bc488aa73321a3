package azblob

import (
	"context"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Sweep removes the blocks that Puts which never committed (killed, or cut
// off from the service) staged below prefix, from blobs last written before
// olderThan (its Last-Modified, by the service's clock: see Now). Azure
// would drop them after a week; until then they are billed.
//
// A blob with staged blocks only cannot be deleted as such: committing an
// empty block list discards its staged blocks and makes it an empty blob,
// which is then deleted. The commit is made only if no blob exists under the
// name (If-None-Match: *), and the delete only of that empty blob (If-Match
// its ETag), so a Put that commits in between keeps its object.
func (s *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	staged, err := s.uncommitted(ctx, prefix)
	if err != nil {
		return 0, s.err("sweep", prefix, err)
	}
	n := 0
	for name, mod := range staged {
		if mod.IsZero() || !mod.Before(olderThan) {
			continue // of unknown age, or young: perhaps a Put under way
		}
		if err := s.discard(ctx, name); err != nil {
			s.log.Warn("storage: could not remove the staged blocks of an unfinished upload", "storage", s.display, "blob", name, "error", s.err("sweep", "", err).Error())
			continue
		}
		n++
	}
	return n, nil
}

// uncommitted returns the blobs below prefix that have staged blocks and no
// committed content, each with its last write: those a listing that includes
// uncommitted blobs shows and a plain one does not. A blob committed between
// the two listings is in both.
func (s *Storage) uncommitted(ctx context.Context, prefix string) (map[string]time.Time, error) {
	all, err := s.listAll(ctx, prefix, true)
	if err != nil {
		return nil, err
	}
	committed, err := s.listAll(ctx, prefix, false)
	if err != nil {
		return nil, err
	}
	for name := range committed {
		delete(all, name)
	}
	return all, nil
}

// listAll lists the blobs below prefix with their last writes, with the
// uncommitted ones or without.
func (s *Storage) listAll(ctx context.Context, prefix string, withUncommitted bool) (map[string]time.Time, error) {
	full := s.prefix + prefix
	p := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &full,
		Include: container.ListBlobsInclude{UncommittedBlobs: withUncommitted}})
	blobs := map[string]time.Time{}
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil {
				continue
			}
			var mod time.Time // zero when the service gives none
			if b.Properties != nil && b.Properties.LastModified != nil {
				mod = *b.Properties.LastModified
			}
			blobs[*b.Name] = mod
		}
	}
	return blobs, nil
}

// discard drops the staged blocks of the blob name, which has no committed
// content, and the empty blob that takes their place.
func (s *Storage) discard(ctx context.Context, name string) error {
	bb := s.client.NewBlockBlobClient(name)
	none := azcore.ETagAny
	resp, err := bb.CommitBlockList(ctx, nil, &blockblob.CommitBlockListOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &none}}})
	if err != nil {
		return err
	}
	_, err = bb.Delete(ctx, &blob.DeleteOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: resp.ETag}}})
	return err
}
