package pitr

import (
	"fmt"
	"strconv"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/repo"
)

// BaseOf reads what recovery needs from a physical backup's manifest.
func BaseOf(m *repo.Manifest) (Base, error) {
	for _, o := range m.Objects {
		if o.Kind != drivers.KindPhysical {
			continue
		}
		b := Base{ID: m.ID, System: o.Meta[postgres.MetaSystemIdentifier]}
		var errs []error
		lsn := func(key string) postgres.LSN {
			l, err := postgres.ParseLSN(o.Meta[key])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q", key, o.Meta[key]))
			}
			return l
		}
		b.Start, b.Stop = lsn(postgres.MetaStartLSN), lsn(postgres.MetaStopLSN)
		tli, err := strconv.ParseUint(o.Meta[postgres.MetaStopTimeline], 10, 32)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q", postgres.MetaStopTimeline, o.Meta[postgres.MetaStopTimeline]))
		}
		b.Timeline = uint32(tli)
		if b.SegSize, err = strconv.ParseUint(o.Meta[postgres.MetaWALSegmentSize], 10, 64); err != nil || !postgres.ValidSegmentSize(b.SegSize) {
			errs = append(errs, fmt.Errorf("%s %q", postgres.MetaWALSegmentSize, o.Meta[postgres.MetaWALSegmentSize]))
		}
		if b.StopTime, err = time.Parse(time.RFC3339Nano, o.Meta[postgres.MetaStopTime]); err != nil {
			errs = append(errs, fmt.Errorf("%s %q", postgres.MetaStopTime, o.Meta[postgres.MetaStopTime]))
		}
		if b.System == "" {
			errs = append(errs, fmt.Errorf("no %s", postgres.MetaSystemIdentifier))
		}
		if len(errs) > 0 {
			return Base{}, fmt.Errorf("physical backup %s does not record what point-in-time recovery needs: %v", m.ID, errs)
		}
		return b, nil
	}
	return Base{}, fmt.Errorf("backup %s is not a physical backup", m.ID)
}

// Bases are the usable physical backups among entries (those List did
// not find a problem with), with the entry of each.
func Bases(entries []repo.Entry) ([]Base, map[string]*repo.Entry) {
	var out []Base
	byID := map[string]*repo.Entry{}
	for i := range entries {
		e := &entries[i]
		if e.Err() != nil || e.Manifest.Method != drivers.MethodPhysical || e.Verification != nil && !e.Verification.OK {
			continue
		}
		if b, err := BaseOf(e.Manifest); err == nil {
			out = append(out, b)
			byID[b.ID] = e
		}
	}
	return out, byID
}
