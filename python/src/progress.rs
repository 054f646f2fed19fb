//! Progress to an optional Python callable: each pipeline event becomes a
//! dict passed to it, with the GIL taken for the call only.

use latent_he::pipeline::{Event, Observer};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// An [`Observer`] calling a Python callable (none: events are dropped).
/// An exception the callable raises is reported as unraisable and the work
/// goes on.
pub struct Progress(pub Option<Py<PyAny>>);

impl Observer for Progress {
    fn event(&self, event: Event<'_>) {
        let Some(callback) = &self.0 else { return };
        Python::attach(|py| {
            let dict = PyDict::new(py);
            let filled = match event {
                Event::Note(text) => dict.set_item("event", "note").and(dict.set_item("message", text)),
                Event::SetsEvaluated {
                    first,
                    last,
                    sets,
                    seconds,
                    backend,
                } => dict
                    .set_item("event", "sets_evaluated")
                    .and(dict.set_item("first", first))
                    .and(dict.set_item("last", last))
                    .and(dict.set_item("sets", sets))
                    .and(dict.set_item("seconds", seconds))
                    .and(dict.set_item("backend", backend)),
                _ => dict.set_item("event", format!("{event:?}")),
            };
            if let Err(e) = filled.and_then(|()| callback.call1(py, (dict,)).map(drop)) {
                e.write_unraisable(py, Some(callback.bind(py)));
            }
        });
    }
}
