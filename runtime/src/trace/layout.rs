//! The probe parts of layout.json as the runtime reads them: the compiler's own layout
//! types (`pol_compiler::obj`, which derive `Deserialize`), read back from the JSON, never
//! the compiler's HIR. The names are the runtime's.

pub use pol_compiler::obj::{
    AggFunction as Function, AggregationLayout as Aggregation, EventsLayout as Events,
    KeyFieldLayout as KeyField, Layout as TraceLayout, MapActionLayout as MapAction,
    ProbeAttach as Attach, ProbeLayout as Probe, RecordLayout as Record,
    ScheduleLayout as Schedule, ValueWordLayout as ValueWord,
};
