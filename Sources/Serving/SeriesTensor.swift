// SeriesTensor: the model-ready tensors of a series' instances stacked into one `.npy` (N, …), in instance order,
// for analysts who train on series. Every instance's tensor must have the same dtype and shape.
import NPY

enum SeriesTensor {
    /// One `.npy` holding every tensor along a new first axis.
    static func stack(_ tensors: [[UInt8]]) throws(ServingError) -> [UInt8] {
        guard !tensors.isEmpty else { throw .notFound }
        do {
            var arrays: [NPYArray] = []
            for tensor in tensors { arrays.append(try NPYArray(decoding: tensor)) }
            return try NPYArray.stacked(arrays).encoded()
        } catch {
            switch error.code {
            case .fortranOrder: throw .unprocessable("tensor_fortran_order")
            case .shapesDiffer: throw .unprocessable("tensor_shapes_differ")
            case .unsupportedDType: throw .unprocessable("tensor_unsupported_dtype")
            default: throw .unprocessable("tensor_not_npy")   // not_npy, size_mismatch
            }
        }
    }
}
