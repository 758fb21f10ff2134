//! Why an exchange could not be decoded.
//!
//! Every variant says what was wrong in words an operator can act on, and
//! [`DecodeError::kind`] gives a stable snake_case id for logs, metrics and
//! tests.

use std::fmt;

/// Which half of an exchange an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The client's request.
    Request,
    /// The model server's response.
    Response,
}

/// Why a request or response could not be turned into observations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No protocol is configured for the model and none matches the path.
    #[error("no protocol is configured or detected for path {path}")]
    UnknownProtocol {
        /// The request path.
        path: String,
    },
    /// The route carries no inference (metadata, readiness, ...): nothing
    /// to observe. Pipelines usually skip this kind rather than count it.
    #[error("{path} is not an inference route")]
    NotInference {
        /// The request path.
        path: String,
    },
    /// The mirror copied only the first bytes of the body (`mirror.max_payload`).
    #[error("the {part} body was cut at the mirror cap ({copied} of {size} bytes copied)")]
    Truncated {
        /// Request or response.
        part: Part,
        /// Bytes copied.
        copied: usize,
        /// Bytes that passed through the proxy.
        size: u64,
    },
    /// The body did not reach its end (an error or hang-up cut it).
    #[error("the {part} body did not reach its end")]
    Incomplete {
        /// Request or response.
        part: Part,
    },
    /// The body is empty where the protocol needs one.
    #[error("the {part} body is empty")]
    EmptyBody {
        /// Request or response.
        part: Part,
    },
    /// The body (or an event in it) is not valid JSON.
    #[error("malformed JSON in the {part}: {detail}")]
    MalformedJson {
        /// Request or response.
        part: Part,
        /// The parser's message.
        detail: String,
    },
    /// A field the protocol requires is absent.
    #[error("the {part} has no `{field}`")]
    MissingField {
        /// Request or response.
        part: Part,
        /// The field's name or JSON pointer.
        field: String,
    },
    /// A field is present but has the wrong type or form.
    #[error("invalid `{field}` in the {part}: {detail}")]
    InvalidField {
        /// Request or response.
        part: Part,
        /// The field's name or JSON pointer.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A tensor declares a datatype the protocol does not define.
    #[error("tensor `{tensor}` has unknown datatype `{datatype}`")]
    UnknownDatatype {
        /// The tensor's name.
        tensor: String,
        /// The datatype as sent.
        datatype: String,
    },
    /// A tensor's shape is unusable (negative or overflowing dimensions, a
    /// zero-sized feature dimension in a non-empty batch).
    #[error("tensor `{tensor}` has a bad shape: {detail}")]
    BadShape {
        /// The tensor's name.
        tensor: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A tensor's shape and the number of elements sent disagree.
    #[error("tensor `{tensor}` has a shape of {expected} elements but {found} were sent")]
    ShapeMismatch {
        /// The tensor's name.
        tensor: String,
        /// Elements the shape declares.
        expected: u64,
        /// Elements present.
        found: u64,
    },
    /// An element does not fit the tensor's datatype.
    #[error("tensor `{tensor}`, element {index}: {detail}")]
    BadValue {
        /// The tensor's name.
        tensor: String,
        /// Position of the element in row-major order.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// Tensors or predictions disagree on the number of rows.
    #[error("{what} has {found} rows where {expected} were expected")]
    BatchMismatch {
        /// What has the wrong number of rows.
        what: String,
        /// Rows expected.
        expected: usize,
        /// Rows found.
        found: usize,
    },
    /// The request carries no input, or an input carries no data.
    #[error("the request has {detail}")]
    MissingInput {
        /// What is missing.
        detail: String,
    },
    /// The response lacks the output to predict from.
    #[error("the response has {detail}")]
    MissingOutput {
        /// What is missing.
        detail: String,
    },
    /// Triton binary tensor data that does not add up.
    #[error("bad binary tensor data in the {part}: {detail}")]
    BadBinary {
        /// Request or response.
        part: Part,
        /// What is wrong with it.
        detail: String,
    },
    /// A gRPC body that is not a sequence of length-prefixed messages.
    #[error("bad gRPC framing in the {part}: {detail}")]
    BadGrpcFrame {
        /// Request or response.
        part: Part,
        /// What is wrong with it.
        detail: String,
    },
    /// A gRPC message with the compressed flag set.
    #[error("compressed gRPC messages are not decoded ({part})")]
    CompressedGrpc {
        /// Request or response.
        part: Part,
    },
    /// A gRPC message that is not the expected protobuf.
    #[error("bad protobuf in the {part}: {detail}")]
    BadProtobuf {
        /// Request or response.
        part: Part,
        /// The decoder's message.
        detail: String,
    },
}

// === impl Part ===

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Request => "request",
            Part::Response => "response",
        })
    }
}

// === impl DecodeError ===

impl DecodeError {
    /// A stable snake_case id of the variant, for logs, metrics and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::UnknownProtocol { .. } => "unknown_protocol",
            DecodeError::NotInference { .. } => "not_inference",
            DecodeError::Truncated { .. } => "truncated_body",
            DecodeError::Incomplete { .. } => "incomplete_body",
            DecodeError::EmptyBody { .. } => "empty_body",
            DecodeError::MalformedJson { .. } => "malformed_json",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::UnknownDatatype { .. } => "unknown_datatype",
            DecodeError::BadShape { .. } => "bad_shape",
            DecodeError::ShapeMismatch { .. } => "shape_mismatch",
            DecodeError::BadValue { .. } => "bad_value",
            DecodeError::BatchMismatch { .. } => "batch_mismatch",
            DecodeError::MissingInput { .. } => "missing_input",
            DecodeError::MissingOutput { .. } => "missing_output",
            DecodeError::BadBinary { .. } => "bad_binary",
            DecodeError::BadGrpcFrame { .. } => "bad_grpc_frame",
            DecodeError::CompressedGrpc { .. } => "compressed_grpc",
            DecodeError::BadProtobuf { .. } => "bad_protobuf",
        }
    }
}
