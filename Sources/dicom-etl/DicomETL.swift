// The dicom-etl command: its subcommands, one file each.
import ArgumentParser
import Ingest

@main
struct DicomETL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dicom-etl",
        abstract: "De-identify, normalise and catalogue DICOM files dropped by a PACS.",
        subcommands: [
            Inspect.self,
            Decode.self,
            RunCommand<IngestPipeline>.self,
            Status.self,
            SandboxWorkerCommand<IngestPipeline>.self,
            Deidentify.self,
            VerifyDeid.self,
            Normalize.self,
            Migrate.self,
            Worker.self,
            Export.self,
            Labels.self,
            Models.self,
            ServeCommand.self,
            TokenCommand.self,
        ]
    )
}
