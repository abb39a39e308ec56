//! Instrument registry and sample types (issue 3). Empty until the metrics pipeline lands.
