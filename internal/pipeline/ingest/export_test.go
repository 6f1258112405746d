package ingest

// QuotaReservations exposes the number of traces holding a spans-per-trace reservation.
func QuotaReservations(in *Ingester) int { return in.quota.reservations() }
